//! The agent's task table ([`Shared`]): every task this node knows, with the way to ask a live
//! task's supervisor to kill it, and what every loop of the agent shares (the status queue, the
//! catalog registrar's wake-up, the drivers' settings). State changes go through
//! [`Shared::commit`]: `task.json` first, then the table, the status queue and the registrar.
//! Applying a desired set ([`Shared::apply`]) starts the new and kills the undesired.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_cli::LockOrExit as _;
use std::time::Duration;

use cairn_client::CatalogClient;
use cairn_marathon::{DesiredTasks, TaskSpec, TaskState, TaskStatusUpdate, now_millis};
use tokio::sync::{Notify, mpsc};

use super::AgentConfig;
use super::supervise::{Start, supervise};
use crate::catalog::RunningTasks;
use crate::checks::OwnChecks;
use crate::docker::Engine;
use crate::http::KnownTasks;
use crate::limits::LimitMode;
use crate::metrics::{Collector, Node, Target};
use crate::sandbox::{self, TaskRecord};
use crate::status::StatusQueue;
use crate::user::{Identity, Runtime, UserError, UserPolicy};

/// A task's state could not be saved in its sandbox.
#[derive(Debug, thiserror::Error)]
#[error("cannot record the task's state: {0}")]
pub(super) struct RecordError(String);

/// A known task: its record and, while it is live, the way to ask its supervisor to kill it.
pub(super) struct Entry {
    pub(super) record: TaskRecord,
    pub(super) kill: Option<mpsc::UnboundedSender<()>>,
}

/// The agent's task table and what every loop shares.
pub struct Shared {
    pub node: String,
    pub address: String,
    pub work_dir: PathBuf,
    tasks: Mutex<BTreeMap<String, Entry>>,
    /// Ids that must never run (refused, or collected with their sandbox).
    never_again: Mutex<BTreeSet<String>>,
    pub status: Arc<StatusQueue>,
    /// Notified on every state change, for the catalog registrar.
    pub catalog_wake: Arc<Notify>,
    pub(super) inherited_env: Vec<(String, String)>,
    pub(super) wrapper: PathBuf,
    pub(super) limit_mode: LimitMode,
    pub(super) catalog: CatalogClient,
    pub(super) kill_drain: Duration,
    pub(super) docker: Engine,
    /// Size above which a task's log files are rotated by their writer.
    pub(super) log_rotate_bytes: u64,
    /// Who tasks may run as.
    pub(super) users: UserPolicy,
    /// The figures of `/metrics`, and the restarts they count.
    pub metrics: Arc<Collector>,
}

impl Shared {
    pub(super) fn new(cfg: &AgentConfig) -> Shared {
        let docker = Engine::new();
        let metrics = Arc::new(Collector::new(
            Node {
                name: cfg.node.clone(),
                cpus: cfg.resources.cpus,
                mem_mb: cfg.resources.mem,
            },
            cfg.limit_mode.clone(),
            docker.clone(),
        ));
        Shared {
            node: cfg.node.clone(),
            address: cfg.address.clone(),
            work_dir: cfg.work_dir.clone(),
            tasks: Mutex::new(BTreeMap::new()),
            never_again: Mutex::new(BTreeSet::new()),
            status: Arc::new(StatusQueue::default()),
            catalog_wake: Arc::new(Notify::new()),
            inherited_env: inherited_env(),
            wrapper: cfg.wrapper.clone(),
            limit_mode: cfg.limit_mode.clone(),
            catalog: cfg.catalog.clone(),
            kill_drain: cfg.kill_drain,
            docker,
            log_rotate_bytes: cfg.log_rotate_bytes,
            users: cfg.users.clone(),
            metrics,
        }
    }

    /// The task table, under the workspace's lock policy: a panic that poisoned it stops the
    /// agent (exit 70) rather than let it restart every task or remove every container on a
    /// table it cannot trust.
    fn table(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.tasks.lock_or_exit("taskrun task table")
    }

    fn never_again(&self) -> MutexGuard<'_, BTreeSet<String>> {
        self.never_again.lock_or_exit("taskrun never-again set")
    }

    /// Every known task's record.
    pub fn records(&self) -> Vec<TaskRecord> {
        self.table().values().map(|e| e.record.clone()).collect()
    }

    /// One task's record.
    pub fn record(&self, id: &str) -> Option<TaskRecord> {
        self.table().get(id).map(|e| e.record.clone())
    }

    pub fn sandbox(&self, id: &str) -> PathBuf {
        sandbox::sandbox_dir(&self.work_dir, id)
    }

    /// Who the task of `spec` runs as (the user database is read off the async workers).
    pub(super) async fn resolve_user(
        &self,
        spec: &TaskSpec,
        runtime: Runtime,
    ) -> Result<Identity, UserError> {
        let policy = self.users.clone();
        let user = spec.user.clone();
        tokio::task::spawn_blocking(move || {
            policy.resolve(user.as_deref(), runtime, crate::user::lookup)
        })
        .await
        .unwrap_or_else(|e| {
            Err(UserError::Lookup {
                user: spec.user.clone().unwrap_or_default(),
                why: e.to_string(),
            })
        })
    }

    /// Where process task `id` works (see [`crate::sandbox`]).
    pub fn workspace(&self, id: &str) -> PathBuf {
        sandbox::workspace_dir(&self.work_dir, id)
    }

    /// The latest status of every known task (the registration's `tasks`).
    pub fn latest_statuses(&self) -> Vec<TaskStatusUpdate> {
        self.records().iter().map(TaskRecord::status).collect()
    }

    /// State of every id the agent knows, for the desired-set diff.
    fn known_states(&self) -> BTreeMap<String, TaskState> {
        let mut known: BTreeMap<String, TaskState> = self
            .table()
            .iter()
            .map(|(id, e)| (id.clone(), e.record.state))
            .collect();
        for id in self.never_again().iter() {
            known.entry(id.clone()).or_insert(TaskState::Error);
        }
        known
    }

    /// Records a state change: `task.json` first, then the table, the status queue and the
    /// catalog registrar. A live state that cannot be saved goes no further (the caller must
    /// not let the task run unrecorded: an agent restarted after it would not know the task,
    /// orphaning it); a terminal one is announced anyway — the task is gone either way.
    pub(super) async fn commit(&self, record: &TaskRecord) -> Result<(), RecordError> {
        let sandbox = self.sandbox(record.id());
        let rec = record.clone();
        let saved = tokio::task::spawn_blocking(move || {
            cairn_cli::create_private_dir(&sandbox).map_err(|source| {
                sandbox::SandboxError::Io {
                    path: sandbox.clone(),
                    source,
                }
            })?;
            rec.save(&sandbox)
        })
        .await;
        let saved = match saved {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RecordError(e.to_string())),
            Err(e) => Err(RecordError(e.to_string())),
        };
        if let Err(e) = &saved {
            tracing::error!(task = %record.id(), state = %record.state, error = %e.0, "cannot record the task's state");
            if !record.state.is_terminal() {
                return saved;
            }
        }
        {
            let mut tasks = self.table();
            let entry = tasks
                .entry(record.id().to_string())
                .or_insert_with(|| Entry {
                    record: record.clone(),
                    kill: None,
                });
            entry.record = record.clone();
            if record.state.is_terminal() {
                entry.kill = None;
            }
        }
        tracing::info!(task = %record.id(), state = %record.state, message = %record.message, "task state");
        self.status.push(record.status());
        self.catalog_wake.notify_one();
        saved
    }

    /// Records a terminal state: announced even when it cannot be saved (see [`Self::commit`]).
    pub(super) async fn commit_end(&self, record: &TaskRecord) {
        debug_assert!(record.state.is_terminal());
        // Logged by commit; a terminal state is announced whether or not it was saved, and
        // there is nothing left to undo.
        let _ = self.commit(record).await;
    }

    /// Applies one desired set: start the new, kill the undesired.
    pub(super) fn apply(self: &Arc<Self>, desired: &DesiredTasks) {
        let plan = crate::desired::plan(&desired.tasks, &self.known_states());
        for spec in plan.start {
            self.accept(spec);
        }
        for id in plan.kill {
            let kill = self.table().get(&id).and_then(|e| e.kill.clone());
            let sent = kill.is_some_and(|tx| tx.send(()).is_ok());
            if sent {
                tracing::info!(task = %id, "killing: no longer desired");
            }
        }
    }

    /// Takes a new task: in the table at once (so a second answer cannot start it again), then
    /// its supervisor does the rest.
    fn accept(self: &Arc<Self>, spec: TaskSpec) {
        if !sandbox::valid_task_id(&spec.id) {
            tracing::warn!(task = ?spec.id, "refusing a task whose id cannot name a sandbox");
            self.never_again().insert(spec.id.clone());
            self.status.push(TaskStatusUpdate {
                task_id: spec.id,
                state: TaskState::Error,
                message: "invalid task id: use letters, digits, '.', '_' and '-'".into(),
                timestamp: now_millis(),
                healthy: None,
            });
            return;
        }
        let record = TaskRecord::staged(spec, now_millis());
        self.spawn_supervisor(record, Start::New);
    }

    /// Puts a live task in the table with its kill channel and starts its supervisor.
    pub(super) fn spawn_supervisor(self: &Arc<Self>, record: TaskRecord, start: Start) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.insert(record.clone(), Some(tx));
        tokio::spawn(supervise(self.clone(), record, start, rx));
    }

    pub(super) fn insert(&self, record: TaskRecord, kill: Option<mpsc::UnboundedSender<()>>) {
        self.table()
            .insert(record.id().to_string(), Entry { record, kill });
    }

    /// Forgets a task whose sandbox was collected: it must never run again.
    pub(super) fn forget(&self, id: &str) {
        self.table().remove(id);
        self.never_again().insert(id.to_string());
    }
}

impl OwnChecks for Shared {
    fn exe(&self) -> &Path {
        &self.wrapper
    }

    /// A script check this agent registered for one of its tasks (see
    /// [`crate::catalog::is_own_check`]), run as the task's user when that is not taskrun's.
    fn run_argv(&self, c: &cairn_wire::HealthCheck) -> Option<Vec<String>> {
        let table = self.table();
        let rec = &table.get(&c.service_id)?.record;
        if !crate::catalog::is_own_check(&rec.spec, &self.node, &self.address, c) {
            return None;
        }
        let argv = &c.definition.script_args;
        Some(match &rec.run_as {
            Some(user) if user.switches_from(self.users.own_uid) => {
                crate::checks::as_user_argv(&self.wrapper, user, argv)
            }
            _ => argv.clone(),
        })
    }
}

impl RunningTasks for Shared {
    fn running_specs(&self) -> Vec<TaskSpec> {
        self.table()
            .values()
            .filter(|e| e.record.state == TaskState::Running)
            .map(|e| e.record.spec.clone())
            .collect()
    }
}

impl KnownTasks for Shared {
    fn records(&self) -> Vec<TaskRecord> {
        Shared::records(self)
    }

    fn record(&self, id: &str) -> Option<TaskRecord> {
        Shared::record(self, id)
    }

    fn sandbox(&self, id: &str) -> PathBuf {
        Shared::sandbox(self, id)
    }

    /// Read under the table's lock without copying whole records.
    fn targets(&self) -> Vec<Target> {
        self.table()
            .values()
            .map(|e| Target::of(&e.record))
            .collect()
    }
}

/// The agent's environment as tasks inherit it (entries that are not UTF-8 are left out).
fn inherited_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}
