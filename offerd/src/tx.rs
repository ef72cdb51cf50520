//! A change in progress: what it touched (records to write, agents to wake) and what it has to
//! say (events, catalog services to remove). The scheduler and the HTTP handlers fill it in; the
//! core turns it into one store batch and, once durable, publishes it.

use std::collections::BTreeSet;

use cairn_marathon::App;

use crate::events::Event;
use crate::model::Task;

/// What a change touched: records to write, agents to wake, events to publish.
#[derive(Debug)]
pub struct Tx {
    pub now_ms: u64,
    pub(crate) apps: BTreeSet<String>,
    pub(crate) tasks: BTreeSet<String>,
    pub(crate) agents: BTreeSet<String>,
    pub(crate) deployments: BTreeSet<String>,
    /// Jobs and runs (by [`crate::model::run_key`]) to write (or delete, when gone).
    pub(crate) jobs: BTreeSet<String>,
    pub(crate) runs: BTreeSet<String>,
    pub(crate) versions: Vec<App>,
    /// Stored versions (app id, version) to drop: beyond [`crate::model::MAX_VERSIONS`].
    pub(crate) dropped_versions: Vec<(String, String)>,
    /// Agents whose desired task set changed.
    pub nodes: BTreeSet<String>,
    /// Apps whose definition or tasks changed: the scheduling round after this change visits
    /// them (and the apps waiting in the queue); a timer round visits every app.
    pub(crate) touched_apps: BTreeSet<String>,
    pub events: Vec<Event>,
    /// Whether anyone listens for events (`/v2/events`): when nobody does, none are made
    /// (1,000 launches or reports are 1,000 events each).
    pub(crate) events_wanted: bool,
    /// Catalog services (node, service id) to remove: tasks of lost agents, whose own agent
    /// cannot deregister them.
    pub stale_services: Vec<(String, String)>,
    /// Tasks placed on agents by this change (for `/metrics`).
    pub(crate) placements: u64,
    /// How long each deployment this change finished took, in ms (for `/metrics`).
    pub(crate) finished_deployments: Vec<u64>,
    /// Finished runs a job keeps per outcome (the scheduler's `job_history`, carried here so
    /// that a task ending anywhere can file its run).
    pub(crate) job_history: usize,
}

impl Tx {
    pub fn new(now_ms: u64) -> Tx {
        Tx {
            now_ms,
            apps: BTreeSet::new(),
            tasks: BTreeSet::new(),
            agents: BTreeSet::new(),
            deployments: BTreeSet::new(),
            jobs: BTreeSet::new(),
            runs: BTreeSet::new(),
            versions: Vec::new(),
            dropped_versions: Vec::new(),
            nodes: BTreeSet::new(),
            touched_apps: BTreeSet::new(),
            events: Vec::new(),
            events_wanted: true,
            stale_services: Vec::new(),
            placements: 0,
            finished_deployments: Vec::new(),
            job_history: crate::scheduler::jobs::DEFAULT_JOB_HISTORY,
        }
    }

    pub fn app(&mut self, id: &str) {
        self.apps.insert(id.to_string());
        self.touched_apps.insert(id.to_string());
    }
    pub fn version(&mut self, app: &App) {
        self.versions.push(app.clone());
    }
    /// A version of an app leaves the store (in the same batch as the change that drops it).
    pub fn drop_version(&mut self, app_id: &str, version: &str) {
        self.dropped_versions
            .push((app_id.to_string(), version.to_string()));
    }
    /// A task changed in a way its agent's desired set may show (launched, killed, ended):
    /// the agent is answered again.
    pub fn task(&mut self, t: &Task) {
        self.task_state(t);
        self.nodes.insert(t.node.clone());
    }

    /// A task's record changed but not its agent's desired set (a state the agent itself
    /// reported, health): written and its app rescheduled, the agent not woken.
    pub fn task_state(&mut self, t: &Task) {
        self.tasks.insert(t.id.clone());
        self.touched_apps.insert(t.app_id.clone());
    }
    pub fn agent(&mut self, node: &str) {
        self.agents.insert(node.to_string());
    }
    pub fn deployment(&mut self, id: &str) {
        self.deployments.insert(id.to_string());
    }
    pub fn job(&mut self, id: &str) {
        self.jobs.insert(id.to_string());
    }
    /// A run changed (by its [`crate::model::run_key`]).
    pub fn run(&mut self, key: &str) {
        self.runs.insert(key.to_string());
    }
    /// Records an event to publish (dropped when nobody listens).
    pub fn event(&mut self, e: Event) {
        if self.events_wanted {
            self.events.push(e);
        }
    }

    /// Whether events are kept: a caller whose events cost something to make asks first.
    pub fn wants_events(&self) -> bool {
        self.events_wanted
    }

    /// Nothing to write (events alone need no commit).
    pub(crate) fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.tasks.is_empty()
            && self.agents.is_empty()
            && self.deployments.is_empty()
            && self.jobs.is_empty()
            && self.runs.is_empty()
            && self.versions.is_empty()
            && self.dropped_versions.is_empty()
    }
}
