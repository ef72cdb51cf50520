//! The records offerd keeps, in memory and (as JSON) in the store: apps with their version
//! history and launch backoff, tasks, agents and deployments.

use cairn_marathon::{AgentRegistration, App, Attributes, Resources, TaskState};
use std::ops::Bound;
use std::sync::Arc;

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
    /// Metronome's jobs by id.
    pub jobs: OrdMap<String, JobEntry>,
    /// The jobs' active runs by [`run_key`] (`<job id>/<run id>`: one job's runs are one
    /// range of keys, job ids having no `/`). A finished run leaves for its job's history.
    pub runs: OrdMap<String, RunRecord>,
    /// No schedule's next tick is before this (Unix ms; memory only, 0 after a load): a round
    /// looks at the jobs' ticks only once it is reached, so 10,000 schedules due next year
    /// cost nothing per round. Lowered by every change that plans a tick
    /// ([`crate::scheduler::jobs::plan_ticks`]), raised by the round that looks.
    pub ticks_not_before: u64,
}

/// A job and what offerd remembers of running it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JobEntry {
    /// The definition, its schedules included.
    pub spec: cairn_metronome::JobSpec,
    /// Per enabled schedule: the next tick it fires at (Unix ms). Written in the same batch as
    /// the run a tick starts, so a tick is run once, whatever restarts or failovers happen.
    #[serde(default)]
    pub next_ticks: std::collections::BTreeMap<String, u64>,
    /// Finished runs (bounded, see [`crate::scheduler::SchedulerConfig::job_history`]) and
    /// the counts.
    #[serde(default)]
    pub history: cairn_metronome::JobHistory,
    /// Parents (`dependencies`) that have succeeded since this job last ran after them: once
    /// every parent is in, the job runs and this empties.
    #[serde(default)]
    pub parents_done: std::collections::BTreeSet<String>,
}

/// The store key and [`State::runs`] key of a run.
pub fn run_key(job_id: &str, run_id: &str) -> String {
    format!("{job_id}/{run_id}")
}

/// One active run of a job: its task now (if any), the ones that ended, and the limits it
/// runs under (taken from the job when the run started: a later change to the job applies to
/// later runs, as in Metronome).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub job_id: String,
    pub created_ms: u64,
    /// What started it: `manual`, `schedule:<id>`, `dependency`.
    pub trigger: String,
    /// The Marathon app its tasks are launched from ([`cairn_metronome::JobSpec::to_app`]).
    pub app: App,
    pub restart: cairn_metronome::RestartSpec,
    /// Seconds a launch may wait for room (`maxLaunchDelay`) before the run fails.
    pub max_launch_delay: u64,
    /// The task running for it, while one does.
    #[serde(default)]
    pub task: Option<String>,
    /// Its tasks that ended, oldest first.
    #[serde(default)]
    pub ended: Vec<cairn_metronome::JobRunTask>,
    /// Launches so far.
    #[serde(default)]
    pub attempts: u32,
    /// No launch before this (Unix ms): the backoff after a failed attempt.
    #[serde(default)]
    pub next_attempt_ms: u64,
    /// Since when it has been waiting to launch (creation, or the failure it retries after).
    pub waiting_since_ms: u64,
    /// Its first launch: `activeDeadlineSeconds` counts from here.
    #[serde(default)]
    pub started_ms: Option<u64>,
    /// Being stopped (a stop request, a deadline): ends as failed once its task is gone.
    #[serde(default)]
    pub stopping: Option<String>,
    /// Why it has not launched yet (memory only, for `/v1/queue` and `offerd jobs`).
    #[serde(skip)]
    pub waiting: Option<String>,
}

/// The tasks by id, with indexes kept beside them: by node, by app, each agent's desired set
/// with every spec already encoded, each agent's resources in use, and the tasks failing their
/// health checks. An agent's desired set, an agent listing, the offers of a scheduling round or
/// an app's round cost in proportion to that agent's or app's tasks (or to the agents), not to
/// the whole fleet's tasks, and answering an agent's poll copies bytes instead of cloning and
/// encoding specs (1,000 agents are answered after every change to their sets). Every change
/// goes through [`Tasks::insert`], [`Tasks::remove`] and [`Tasks::get_mut`] (whose guard
/// re-indexes a task whose indexed fields changed), and each adds or takes out a task's whole
/// entry (`Indexes::add`, `Indexes::remove`), so the indexes are kept in one place. A task's
/// spec is never changed after launch (a new spec is a new task), so its encoding is made once.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    /// Each record behind its own `Arc`: copying a node of the map (what a change to a
    /// persistent map does) copies pointers, not tasks; a task is copied when it changes.
    by_id: OrdMap<Id, Arc<Task>>,
    ix: Indexes,
}

/// A task id or node name as the maps hold it: copying one (as the maps' nodes are copied on
/// change) is a reference count, not an allocation.
pub type Id = Arc<str>;

/// A task spec encoded as JSON (what an agent's desired set is made of).
pub type SpecJson = Arc<[u8]>;

fn spec_json(t: &Task) -> SpecJson {
    // A TaskSpec is plain data (strings, numbers, maps with string keys, JSON values): its
    // encoding cannot fail; an empty object would only ever stand for one that did.
    serde_json::to_vec(&t.spec)
        .unwrap_or_else(|_| b"{}".to_vec())
        .into()
}

/// What one node's active tasks use: resources as exact sums (fixed point, 2^-64 units: every
/// `f64` from about 2^-12 up is a whole number of units, so adding and taking out a task leaves
/// the sum exactly as it was, and it never drifts however many tasks come and go) and host
/// ports with how many tasks hold each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeUsage {
    cpus: i128,
    mem: i128,
    disk: i128,
    ports: OrdMap<u16, u32>,
    tasks: u32,
}

/// 2^64: the fixed-point scale of [`NodeUsage`].
const UNITS: f64 = 18_446_744_073_709_551_616.0;

fn units(x: f64) -> i128 {
    // Multiplying by a power of two is exact; `as` saturates (and takes NaN to 0).
    (x * UNITS) as i128
}

impl NodeUsage {
    pub fn cpus(&self) -> f64 {
        self.cpus as f64 / UNITS
    }
    pub fn mem(&self) -> f64 {
        self.mem as f64 / UNITS
    }
    pub fn disk(&self) -> f64 {
        self.disk as f64 / UNITS
    }
    /// The host ports active tasks hold.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.keys().copied()
    }

    fn change(&mut self, k: &Indexed, sign: i128) {
        self.cpus += sign * units(k.cpus);
        self.mem += sign * units(k.mem);
        self.disk += sign * units(k.disk);
        for &p in &k.ports {
            let n = self.ports.get(&p).copied().unwrap_or(0);
            let n = if sign > 0 { n + 1 } else { n.saturating_sub(1) };
            if n == 0 {
                self.ports.remove(&p);
            } else {
                self.ports.insert(p, n);
            }
        }
        self.tasks = if sign > 0 {
            self.tasks + 1
        } else {
            self.tasks.saturating_sub(1)
        };
    }
}

/// An entry of an index that holds something per key (a set of ids, a map by id, a node's
/// usage): an empty one is not kept.
trait Bucket: Clone + Default {
    fn is_empty(&self) -> bool;
}

impl Bucket for OrdSet<Id> {
    fn is_empty(&self) -> bool {
        OrdSet::is_empty(self)
    }
}

impl Bucket for OrdMap<Id, SpecJson> {
    fn is_empty(&self) -> bool {
        OrdMap::is_empty(self)
    }
}

impl Bucket for NodeUsage {
    fn is_empty(&self) -> bool {
        self.tasks == 0
    }
}

/// Changes the entry under `key` in place (created when missing, dropped once empty).
fn update<B: Bucket>(index: &mut OrdMap<Id, B>, key: &str, f: impl FnOnce(&mut B)) {
    let empty = match index.get_mut(key) {
        Some(b) => {
            f(b);
            b.is_empty()
        }
        None => {
            let mut b = B::default();
            f(&mut b);
            if b.is_empty() {
                return;
            }
            index.insert(key.into(), b);
            false
        }
    };
    if empty {
        index.remove(key);
    }
}

/// What the indexes know of a task: a change to any of it re-indexes the task.
#[derive(Clone, Debug, PartialEq)]
struct Indexed {
    node: String,
    app_id: String,
    desired: bool,
    active: bool,
    failing: bool,
    cpus: f64,
    mem: f64,
    disk: f64,
    ports: Vec<u16>,
}

impl Indexed {
    fn of(t: &Task) -> Indexed {
        Indexed {
            node: t.node.clone(),
            app_id: t.app_id.clone(),
            desired: t.is_desired(),
            active: t.is_active(),
            failing: t.healthy == Some(false) && t.unhealthy_since.is_some(),
            cpus: t.spec.cpus,
            mem: t.spec.mem,
            disk: t.spec.disk,
            ports: t.ports.clone(),
        }
    }
}

/// The indexes of [`Tasks`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Indexes {
    by_node: IndexOf,
    by_app: IndexOf,
    /// Per node: its desired tasks' specs as JSON, by task id.
    desired: DesiredOf,
    /// Per node: what its active tasks use.
    usage: OrdMap<Id, NodeUsage>,
    /// Tasks whose checks are failing (health kills look at these only).
    failing: OrdSet<Id>,
}

impl Indexes {
    /// Adds `t` (under `id`, with `k`, its [`Indexed`]) to every index.
    fn add(&mut self, id: &Id, t: &Task, k: &Indexed) {
        update(&mut self.by_node, &k.node, |ids| {
            ids.insert(id.clone());
        });
        update(&mut self.by_app, &k.app_id, |ids| {
            ids.insert(id.clone());
        });
        if k.desired {
            let json = spec_json(t);
            update(&mut self.desired, &k.node, |set| {
                set.insert(id.clone(), json);
            });
        }
        if k.active {
            update(&mut self.usage, &k.node, |u| u.change(k, 1));
        }
        if k.failing {
            self.failing.insert(id.clone());
        }
    }

    /// Takes task `id` (indexed as `k`) out of every index.
    fn remove(&mut self, id: &str, k: &Indexed) {
        update(&mut self.by_node, &k.node, |ids| {
            ids.remove(id);
        });
        update(&mut self.by_app, &k.app_id, |ids| {
            ids.remove(id);
        });
        if k.desired {
            update(&mut self.desired, &k.node, |set| {
                set.remove(id);
            });
        }
        if k.active {
            update(&mut self.usage, &k.node, |u| u.change(k, -1));
        }
        if k.failing {
            self.failing.remove(id);
        }
    }
}

impl Tasks {
    pub fn get(&self, id: &str) -> Option<&Task> {
        self.by_id.get(id).map(|t| &**t)
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
        self.by_id.values().map(|t| &**t)
    }

    /// Adds (or replaces) a task under its id.
    pub fn insert(&mut self, task: Task) {
        self.remove(&task.id);
        let id: Id = task.id.as_str().into();
        self.ix.add(&id, &task, &Indexed::of(&task));
        self.by_id.insert(id, Arc::new(task));
    }

    pub fn remove(&mut self, id: &str) -> Option<Task> {
        let task = self.by_id.remove(id)?;
        self.ix.remove(id, &Indexed::of(&task));
        Some(Arc::unwrap_or_clone(task))
    }

    /// A task to change in place; the guard re-indexes it when dropped, should anything an
    /// index knows of it have changed (node, app, desiredness, activity, health failing,
    /// resources, ports).
    pub fn get_mut(&mut self, id: &str) -> Option<TaskMut<'_>> {
        let (id, task) = self.by_id.get_key_value_mut(id)?;
        let before = Indexed::of(task);
        Some(TaskMut {
            id: id.clone(),
            task,
            ix: &mut self.ix,
            before,
        })
    }

    /// The specs of `node`'s desired tasks as JSON, by task id: its desired set.
    pub fn desired_on(&self, node: &str) -> impl Iterator<Item = &SpecJson> {
        self.ix
            .desired
            .get(node)
            .into_iter()
            .flat_map(|set| set.values())
    }

    /// What `node`'s active tasks use (nothing when it has none).
    pub fn usage_on(&self, node: &str) -> Option<&NodeUsage> {
        self.ix.usage.get(node)
    }

    /// The tasks whose health checks are failing (`healthy: false`, with the time since).
    pub fn failing(&self) -> impl Iterator<Item = &Task> {
        self.ix.failing.iter().filter_map(|id| self.get(id))
    }

    /// The tasks recorded on `node` (in any state).
    pub fn on_node<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a Task> + 'a {
        self.ix
            .by_node
            .get(node)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.get(id))
    }

    /// The tasks of `app_id` (in any state; launched by an app or by a framework under it).
    /// Task ids start with the app id's prefix (see [`cairn_marathon::task_id_for`]), so this is
    /// a walk over that range of ids, with no lookup per task; ids of another app sharing the
    /// prefix (`/a/b` and `/a_b`) are skipped.
    pub fn of_app<'a>(&'a self, app_id: &'a str) -> impl Iterator<Item = &'a Task> + 'a {
        let prefix = cairn_marathon::task_id_for(app_id, "");
        self.by_id
            .range::<_, str>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .take_while(move |(id, _)| id.starts_with(prefix.as_str()))
            .map(|(_, t)| &**t)
            .filter(move |t| t.app_id == app_id)
    }

    /// Every app id that has tasks.
    pub fn app_ids(&self) -> impl Iterator<Item = &str> {
        self.ix.by_app.keys().map(|id| &**id)
    }

    /// The indexes as they would be rebuilt from the records, for tests that check them
    /// against [`Tasks::indexes`].
    #[cfg(test)]
    pub fn recomputed_indexes(&self) -> Indexes {
        let mut ix = Indexes::default();
        for (id, t) in &self.by_id {
            ix.add(id, t, &Indexed::of(t));
        }
        ix
    }

    #[cfg(test)]
    pub fn indexes(&self) -> Indexes {
        self.ix.clone()
    }
}

/// `tasks[id]` and `deployments[id]`, as on the maps they wrap (panics on an unknown id, like
/// them: for ids just looked up).
macro_rules! index_by_id {
    ($table:ty, $record:ty) => {
        impl std::ops::Index<&str> for $table {
            type Output = $record;
            fn index(&self, id: &str) -> &$record {
                std::borrow::Borrow::borrow(&self.by_id[id])
            }
        }
        impl std::ops::Index<&String> for $table {
            type Output = $record;
            fn index(&self, id: &String) -> &$record {
                std::borrow::Borrow::borrow(&self.by_id[id.as_str()])
            }
        }
    };
}
index_by_id!(Tasks, Task);
index_by_id!(Deployments, Deployment);

/// An index: key → ids.
pub type IndexOf = OrdMap<Id, OrdSet<Id>>;
/// The desired sets: node → task id → spec JSON.
pub type DesiredOf = OrdMap<Id, OrdMap<Id, SpecJson>>;

/// A task being changed in place (see [`Tasks::get_mut`]). The record is copied (when the
/// state before the change still shares it) only once it is written to.
pub struct TaskMut<'a> {
    id: Id,
    task: &'a mut Arc<Task>,
    ix: &'a mut Indexes,
    /// What the indexes hold for it.
    before: Indexed,
}

impl std::ops::Deref for TaskMut<'_> {
    type Target = Task;
    fn deref(&self) -> &Task {
        self.task
    }
}

impl std::ops::DerefMut for TaskMut<'_> {
    fn deref_mut(&mut self) -> &mut Task {
        Arc::make_mut(self.task)
    }
}

impl Drop for TaskMut<'_> {
    fn drop(&mut self) {
        let now = Indexed::of(self.task);
        if now != self.before {
            self.ix.remove(&self.id, &self.before);
            self.ix.add(&self.id, self.task, &now);
        }
    }
}

/// The running deployments by id, indexed by app (at most one runs per app unless forced, but
/// the index does not assume it).
#[derive(Clone, Debug, Default)]
pub struct Deployments {
    by_id: OrdMap<String, Deployment>,
    by_app: IndexOf,
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
        self.remove(&d.id);
        update(&mut self.by_app, &d.app_id, |ids| {
            ids.insert(d.id.as_str().into());
        });
        self.by_id.insert(d.id.clone(), d);
    }

    pub fn remove(&mut self, id: &str) -> Option<Deployment> {
        let d = self.by_id.remove(id)?;
        update(&mut self.by_app, &d.app_id, |ids| {
            ids.remove(id);
        });
        Some(d)
    }

    /// The deployments of `app_id`, by id.
    pub fn of_app<'a>(&'a self, app_id: &str) -> impl Iterator<Item = &'a Deployment> + 'a {
        self.by_app
            .get(app_id)
            .into_iter()
            .flat_map(|ids| ids.iter())
            .filter_map(|id| self.by_id.get(&**id))
    }

    #[cfg(test)]
    pub fn index_is_consistent(&self) -> bool {
        let mut by_app = IndexOf::new();
        for d in self.by_id.values() {
            update(&mut by_app, &d.app_id, |ids| {
                ids.insert(d.id.as_str().into());
            });
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
