//! `taskrun agent`: the node agent. It owns the table of tasks this node knows and wires the
//! loops around it:
//!
//! - start-up: every `task.json` under the work dir is loaded; a task whose supervisor still runs
//!   (same pid *and* start time) is re-adopted, one that ended meanwhile is recorded terminal
//!   with the outcome its supervisor wrote to `exit_status`. A Docker task is found again by the
//!   container id in its record (a running container re-adopted, its log copy and wait resumed;
//!   an exited one recorded with the exit code `inspect` gives), and containers of this agent
//!   that no live task owns are stopped and removed;
//! - offerd: register (retrying with backoff until it answers), then long-poll the desired set
//!   (each poll is the heartbeat) and apply [`crate::desired::plan`] to every answer; a 404 means
//!   offerd lost the node, so register again;
//! - one supervisor task per task (exec or Docker driver): launch, wait, kill on request, record
//!   each state change in `task.json` and queue it as a status update (in that order, so the
//!   queue never announces what the disk does not hold). A kill first takes the task out of the
//!   catalog and waits the drain delay ([`crate::drain`]);
//! - status sender, catalog registrar, in-process `healthcheck` agent, HTTP API, and a
//!   housekeeper that rotates logs and removes old terminal sandboxes.
//!
//! On SIGTERM the loops stop and queued updates are flushed; tasks keep running and are
//! re-adopted by the next agent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_client::{Backoff, CatalogClient, Method, QueryOptions, Watch, WatchConfig};
use cairn_marathon::{
    AgentRegistration, Attributes, DesiredTasks, RegisterResponse, Resources, TaskSpec, TaskState,
    TaskStatusUpdate, now_millis,
};
use cairn_wire::CatalogDeregistration;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::catalog::{Registrar, RunningTasks};
use crate::container::ContainerPlan;
use crate::docker::{ContainerState, DockerError, Engine};
use crate::exec::{self, ExecError, KillReport, Launch, Outcome, Proc, Started};
use crate::limits::{LimitMode, TaskLimits};
use crate::procfs::{Adoption, adoption, read_stat};
use crate::sandbox::{self, ExitInfo, TaskRecord};
use crate::status::StatusQueue;

/// Heartbeat assumed when offerd's answer does not say.
const DEFAULT_HEARTBEAT_MS: u64 = 20_000;
/// How often live tasks' logs are checked for rotation.
const ROTATE_EVERY: Duration = Duration::from_secs(2);
/// How often old terminal sandboxes are collected.
const GC_EVERY: Duration = Duration::from_secs(60);
/// How long shutdown waits for the HTTP server and the status flush.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a kill waits for the catalog to deregister the task's service before draining.
const DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an ended container's remaining output may take to be copied.
const LOGS_TAIL_TIMEOUT: Duration = Duration::from_secs(10);
/// Grace period of a container no task owns (its spec is unknown).
const ORPHAN_GRACE: Duration = Duration::from_secs(3);

/// Everything the agent is configured with.
pub struct AgentConfig {
    pub node: String,
    /// Address tasks are reachable on (HOST, catalog service address).
    pub address: String,
    pub http_addr: SocketAddr,
    /// Bounds of the HTTP API.
    pub http_limits: cairn_http::Limits,
    pub resources: Resources,
    pub attributes: Attributes,
    pub work_dir: PathBuf,
    pub offerd: CatalogClient,
    pub catalog: CatalogClient,
    /// The taskrun binary run as each task's supervisor (`/proc/self/exe`).
    pub wrapper: PathBuf,
    pub limit_mode: LimitMode,
    pub log_rotate_bytes: u64,
    /// How long a task stays out of the catalog before it is stopped (0: no drain).
    pub kill_drain: Duration,
}

/// Why the agent cannot run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("work dir {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("work dir {0} is in use by another taskrun agent")]
    Locked(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A known task: its record and, while it is live, the way to ask its supervisor to kill it.
struct Entry {
    record: TaskRecord,
    kill: Option<mpsc::UnboundedSender<()>>,
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
    inherited_env: Vec<(String, String)>,
    wrapper: PathBuf,
    limit_mode: LimitMode,
    catalog: CatalogClient,
    kill_drain: Duration,
    docker: Engine,
}

/// How a supervisor begins.
enum Start {
    New,
    /// An exec task started by an earlier agent.
    Adopted(Proc),
    /// A Docker task started by an earlier agent (its record holds the container id).
    AdoptedContainer,
}

impl Shared {
    fn new(cfg: &AgentConfig) -> Shared {
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
            docker: Engine::new(),
        }
    }

    /// Every known task's record.
    pub fn records(&self) -> Vec<TaskRecord> {
        self.tasks
            .lock()
            .map(|t| t.values().map(|e| e.record.clone()).collect())
            .unwrap_or_default()
    }

    /// One task's record.
    pub fn record(&self, id: &str) -> Option<TaskRecord> {
        self.tasks
            .lock()
            .ok()
            .and_then(|t| t.get(id).map(|e| e.record.clone()))
    }

    pub fn sandbox(&self, id: &str) -> PathBuf {
        sandbox::sandbox_dir(&self.work_dir, id)
    }

    /// The latest status of every known task (the registration's `tasks`).
    pub fn latest_statuses(&self) -> Vec<TaskStatusUpdate> {
        self.records().iter().map(TaskRecord::status).collect()
    }

    /// State of every id the agent knows, for the desired-set diff.
    fn known_states(&self) -> BTreeMap<String, TaskState> {
        let mut known: BTreeMap<String, TaskState> = self
            .tasks
            .lock()
            .map(|t| {
                t.iter()
                    .map(|(id, e)| (id.clone(), e.record.state))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(never) = self.never_again.lock() {
            for id in never.iter() {
                known.entry(id.clone()).or_insert(TaskState::Error);
            }
        }
        known
    }

    /// Records a state change: `task.json` first, then the table, the status queue and the
    /// catalog registrar.
    async fn commit(&self, record: &TaskRecord) {
        let sandbox = self.sandbox(record.id());
        let rec = record.clone();
        let saved = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&sandbox).map_err(|source| sandbox::SandboxError::Io {
                path: sandbox.clone(),
                source,
            })?;
            rec.save(&sandbox)
        })
        .await;
        match saved {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(task = %record.id(), error = %e, "cannot record the task's state")
            }
            Err(e) => {
                tracing::error!(task = %record.id(), error = %e, "cannot record the task's state")
            }
        }
        if let Ok(mut tasks) = self.tasks.lock() {
            match tasks.get_mut(record.id()) {
                Some(e) => {
                    e.record = record.clone();
                    if record.state.is_terminal() {
                        e.kill = None;
                    }
                }
                None => {
                    tasks.insert(
                        record.id().to_string(),
                        Entry {
                            record: record.clone(),
                            kill: None,
                        },
                    );
                }
            }
        }
        tracing::info!(task = %record.id(), state = %record.state, message = %record.message, "task state");
        self.status.push(record.status());
        self.catalog_wake.notify_one();
    }

    /// Applies one desired set: start the new, kill the undesired.
    fn apply(self: &Arc<Self>, desired: &DesiredTasks) {
        let plan = crate::desired::plan(&desired.tasks, &self.known_states());
        for spec in plan.start {
            self.accept(spec);
        }
        for id in plan.kill {
            let sent = self
                .tasks
                .lock()
                .ok()
                .and_then(|t| t.get(&id).and_then(|e| e.kill.clone()))
                .is_some_and(|tx| tx.send(()).is_ok());
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
            if let Ok(mut never) = self.never_again.lock() {
                never.insert(spec.id.clone());
            }
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
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(
                record.id().to_string(),
                Entry {
                    record: record.clone(),
                    kill: Some(tx),
                },
            );
        }
        tokio::spawn(supervise(self.clone(), record, Start::New, rx));
    }

    /// Starts a task's process.
    fn launch(&self, record: &TaskRecord, sandbox: &Path) -> Result<Started, ExecError> {
        let spec = &record.spec;
        let argv = exec::command_argv(spec)?;
        let env = crate::env::task_env(spec, &self.address, sandbox, self.inherited_env.clone());
        exec::launch(Launch {
            task_id: &spec.id,
            sandbox,
            argv,
            env,
            limits: TaskLimits {
                cpus: spec.cpus,
                mem_mb: spec.mem,
            },
            mode: &self.limit_mode,
            wrapper: &self.wrapper,
        })
    }

    /// The container a Docker task runs in.
    fn container_plan(
        &self,
        spec: &TaskSpec,
    ) -> Result<ContainerPlan, crate::container::ContainerError> {
        crate::container::plan(
            spec,
            &crate::container::Context {
                node: &self.node,
                host: &self.address,
                work_dir: &self.work_dir,
                host_cpus: crate::node::cpu_count(),
            },
        )
    }

    /// Takes a task's service out of the catalog now, without waiting for the registrar (which
    /// would remove it too, the task being no longer running): a kill drains only after this.
    async fn deregister(&self, id: &str) {
        let dereg = CatalogDeregistration {
            node: self.node.clone(),
            service_id: id.to_string(),
            ..Default::default()
        };
        match tokio::time::timeout(DEREGISTER_TIMEOUT, self.catalog.catalog_deregister(&dereg))
            .await
        {
            Ok(Ok(())) => {
                tracing::info!(task = %id, drain = ?self.kill_drain, "service deregistered; draining before the kill")
            }
            Ok(Err(e)) => {
                tracing::warn!(task = %id, error = %e, "cannot deregister the service; draining anyway")
            }
            Err(_) => {
                tracing::warn!(task = %id, "the catalog did not answer the deregistration in time; draining anyway")
            }
        }
    }

    /// The drain before a kill ([`crate::drain`]): only for a task that was running (and so
    /// registered). `Some` when the task ended by itself meanwhile.
    async fn drain<T>(
        &self,
        id: &str,
        was_running: bool,
        ended: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        if !was_running {
            return None;
        }
        crate::drain::drain(self.kill_drain, self.deregister(id), ended).await
    }

    /// Recovers a Docker task that was not terminal when the agent stopped.
    async fn recover_container(self: &Arc<Self>, mut rec: TaskRecord) {
        let id = rec.id().to_string();
        if let Some(container) = rec.container.clone() {
            tracing::info!(task = %id, container = %container, "re-adopting a container");
            let (tx, rx) = mpsc::unbounded_channel();
            self.insert(rec.clone(), Some(tx));
            tokio::spawn(supervise(self.clone(), rec, Start::AdoptedContainer, rx));
            return;
        }
        // Accepted, launch not recorded: a container it may have created is nobody's now.
        let name = crate::container::container_name(&id);
        let message = match self.docker.remove(&name).await {
            Ok(()) => "taskrun stopped while launching the container; the launch was abandoned",
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "cannot remove a container whose launch was never recorded");
                "taskrun stopped while launching the container"
            }
        };
        rec.set_state(TaskState::Failed, message, now_millis());
        self.commit(&rec).await;
    }

    /// Stops and removes this agent's containers that no live task owns: left by a task that
    /// ended while the agent was away, or whose record is gone. (A live task's container that
    /// offerd no longer wants is killed by the desired-set diff, with the drain.)
    async fn sweep_containers(self: &Arc<Self>) {
        let work_dir = self.work_dir.display().to_string();
        let owned = match self.docker.list_owned(&self.node, &work_dir).await {
            Ok(o) => o,
            Err(e) => {
                tracing::debug!(error = %e, "no containers to sweep (Docker engine not reachable)");
                return;
            }
        };
        for c in owned {
            let live = self.record(&c.task_id).is_some_and(|r| {
                !r.state.is_terminal() && r.container.as_deref() == Some(c.id.as_str())
            });
            if live {
                continue;
            }
            tracing::info!(task = %c.task_id, container = %c.id, running = c.running, "removing a container no live task owns");
            let engine = self.docker.clone();
            tokio::spawn(async move {
                if c.running
                    && let Err(e) = engine.stop(&c.id, ORPHAN_GRACE).await
                {
                    tracing::warn!(container = %c.id, error = %e, "cannot stop an orphan container");
                }
                if let Err(e) = engine.remove(&c.id).await {
                    tracing::warn!(container = %c.id, error = %e, "cannot remove an orphan container");
                }
            });
        }
    }

    /// Loads the work dir: re-adopts live tasks, records the ones that ended while the agent was
    /// away.
    async fn recover(self: &Arc<Self>) {
        let work_dir = self.work_dir.clone();
        let (records, errors) = tokio::task::spawn_blocking(move || sandbox::load_all(&work_dir))
            .await
            .unwrap_or_default();
        for e in errors {
            tracing::warn!(error = %e, "skipping an unreadable sandbox");
        }
        for mut rec in records {
            let id = rec.id().to_string();
            if rec.state.is_terminal() {
                self.insert(rec, None);
                continue;
            }
            if exec::wants_docker(&rec.spec) {
                self.recover_container(rec).await;
                continue;
            }
            let Some(pid) = rec.pid else {
                // Accepted, not recorded as launched: the agent stopped in between. A process
                // it may have started is nobody's now; end it rather than leak it.
                let exit_file = self.sandbox(&id).join(sandbox::EXIT_FILE);
                let message = match crate::procfs::find_wrapper(&exit_file).filter(|p| *p > 1) {
                    Some(orphan) => {
                        if let Err(e) = cairn_proc::signal_group(orphan, cairn_proc::Signal::KILL) {
                            tracing::warn!(task = %id, pid = orphan, error = %e, "cannot kill an unrecorded task");
                        }
                        tracing::warn!(task = %id, pid = orphan, "killed a task whose launch was never recorded");
                        "taskrun stopped while launching the task; it was killed"
                    }
                    None => "taskrun stopped before the task was launched",
                };
                rec.set_state(TaskState::Failed, message, now_millis());
                self.commit(&rec).await;
                continue;
            };
            let stat = read_stat(pid).ok().flatten();
            match adoption(rec.start_time, stat.as_ref()) {
                Adoption::Adopt => {
                    tracing::info!(task = %id, pid, "re-adopting a running task");
                    let (tx, rx) = mpsc::unbounded_channel();
                    self.insert(rec.clone(), Some(tx));
                    let proc = Proc::Adopted {
                        pid,
                        start_time: rec.start_time,
                    };
                    tokio::spawn(supervise(self.clone(), rec, Start::Adopted(proc), rx));
                }
                Adoption::Gone => {
                    let killing = rec.state == TaskState::Killing;
                    let exit = ExitInfo::read(&self.sandbox(&id));
                    let out = exec::outcome(
                        exit,
                        None,
                        killing.then_some(KillReport { escalated: false }),
                    );
                    tracing::info!(task = %id, pid, "task ended while taskrun was away");
                    finish(&mut rec, out);
                    self.commit(&rec).await;
                    if let Some(cg) = &rec.cgroup {
                        crate::limits::remove_task_cgroup(cg);
                    }
                }
            }
        }
        self.sweep_containers().await;
    }

    fn insert(&self, record: TaskRecord, kill: Option<mpsc::UnboundedSender<()>>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(record.id().to_string(), Entry { record, kill });
        }
    }

    /// Rotates the logs of live tasks.
    fn rotate_logs(&self, max: u64) {
        let live: Vec<String> = self
            .records()
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| r.spec.id)
            .collect();
        for id in live {
            let sb = self.sandbox(&id);
            for f in [sandbox::STDOUT_FILE, sandbox::STDERR_FILE] {
                match crate::logs::rotate_if_needed(&sb.join(f), max, crate::logs::KEEP) {
                    Ok(true) => tracing::debug!(task = %id, file = f, "log rotated"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(task = %id, file = f, error = %e, "cannot rotate log"),
                }
            }
        }
    }

    /// Removes old terminal sandboxes (see [`sandbox::gc_victims`]).
    fn collect_garbage(&self) {
        let finished: Vec<(String, u64)> = self
            .records()
            .into_iter()
            .filter(|r| r.state.is_terminal())
            .map(|r| (r.spec.id.clone(), r.finished_at.unwrap_or(r.updated_at)))
            .collect();
        for id in sandbox::gc_victims(&finished, now_millis()) {
            let sb = self.sandbox(&id);
            match std::fs::remove_dir_all(&sb) {
                Ok(()) => tracing::info!(task = %id, "removed an old terminal sandbox"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(task = %id, error = %e, "cannot remove an old sandbox");
                    continue;
                }
            }
            if let Ok(mut tasks) = self.tasks.lock() {
                tasks.remove(&id);
            }
            if let Ok(mut never) = self.never_again.lock() {
                never.insert(id);
            }
        }
    }
}

impl RunningTasks for Shared {
    fn running_specs(&self) -> Vec<TaskSpec> {
        self.tasks
            .lock()
            .map(|t| {
                t.values()
                    .filter(|e| e.record.state == TaskState::Running)
                    .map(|e| e.record.spec.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The agent's environment as tasks inherit it (entries that are not UTF-8 are left out).
fn inherited_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Applies an outcome to a record.
fn finish(rec: &mut TaskRecord, out: exec::Outcome) {
    let now = now_millis();
    rec.finished_at = Some(
        out.exit
            .as_ref()
            .map(|e| e.finished_at)
            .filter(|t| *t > 0)
            .unwrap_or(now),
    );
    rec.exit = out.exit;
    rec.set_state(out.state, out.message, now);
}

/// One task from acceptance (or adoption) to its terminal state.
async fn supervise(
    shared: Arc<Shared>,
    rec: TaskRecord,
    start: Start,
    kill_rx: mpsc::UnboundedReceiver<()>,
) {
    match start {
        Start::AdoptedContainer => supervise_container(shared, rec, true, kill_rx).await,
        Start::New if exec::wants_docker(&rec.spec) => {
            supervise_container(shared, rec, false, kill_rx).await
        }
        Start::New => supervise_process(shared, rec, None, kill_rx).await,
        Start::Adopted(proc) => supervise_process(shared, rec, Some(proc), kill_rx).await,
    }
}

/// Records a task killed before it started (its kill came while it was being accepted).
async fn killed_before_start(shared: &Shared, rec: &mut TaskRecord) {
    rec.set_state(
        TaskState::Killed,
        "killed: no longer desired (before it started)",
        now_millis(),
    );
    shared.commit(rec).await;
}

/// Records the kill decision: TASK_KILLING, and whether the task was running (so registered in
/// the catalog, so to be drained).
async fn begin_kill(shared: &Shared, rec: &mut TaskRecord) -> bool {
    let was_running = rec.state == TaskState::Running;
    rec.set_state(
        TaskState::Killing,
        "killing: no longer desired",
        now_millis(),
    );
    shared.commit(rec).await;
    was_running
}

/// An exec task: started here (`adopted` = `None`) or followed by pid.
async fn supervise_process(
    shared: Arc<Shared>,
    mut rec: TaskRecord,
    adopted: Option<Proc>,
    mut kill_rx: mpsc::UnboundedReceiver<()>,
) {
    let sandbox = shared.sandbox(rec.id());
    let mut proc = match adopted {
        Some(p) => p,
        None => {
            shared.commit(&rec).await;
            if kill_rx.try_recv().is_ok() {
                killed_before_start(&shared, &mut rec).await;
                return;
            }
            match shared.launch(&rec, &sandbox) {
                Err(e) => {
                    rec.set_state(TaskState::Failed, e.to_string(), now_millis());
                    shared.commit(&rec).await;
                    return;
                }
                Ok(started) => {
                    let now = now_millis();
                    rec.pid = Some(started.pid);
                    rec.start_time = started.start_time;
                    rec.cgroup = started.cgroup;
                    rec.started_at = Some(now);
                    rec.set_state(TaskState::Running, "", now);
                    shared.commit(&rec).await;
                    Proc::Owned(started.child)
                }
            }
        }
    };
    let grace = exec::grace_of(rec.spec.kill_grace_seconds);
    let (wait, killed) = if rec.state == TaskState::Killing {
        let (w, k) = exec::kill(&mut proc, grace).await;
        (w, Some(k))
    } else {
        tokio::select! {
            w = proc.wait() => (w, None),
            Some(()) = kill_rx.recv() => {
                let was_running = begin_kill(&shared, &mut rec).await;
                match shared.drain(rec.id(), was_running, proc.wait()).await {
                    // It ended by itself during the drain.
                    Some(w) => (w, Some(KillReport { escalated: false })),
                    None => {
                        let (w, k) = exec::kill(&mut proc, grace).await;
                        (w, Some(k))
                    }
                }
            }
        }
    };
    let out = exec::outcome(ExitInfo::read(&sandbox), wait, killed);
    finish(&mut rec, out);
    shared.commit(&rec).await;
    if let Some(cg) = &rec.cgroup {
        crate::limits::remove_task_cgroup(cg);
    }
}

/// `docker stop` with the grace period, then the container's final state.
async fn stop_container(
    engine: &Engine,
    id: &str,
    grace: Duration,
) -> Result<ContainerState, DockerError> {
    if let Err(e) = engine.stop(id, grace).await {
        tracing::warn!(container = %id, error = %e, "docker stop failed; waiting for the container anyway");
    }
    engine.wait(id).await
}

/// A Docker task: launched here, or re-adopted (`adopted`) from its record's container id.
async fn supervise_container(
    shared: Arc<Shared>,
    mut rec: TaskRecord,
    adopted: bool,
    mut kill_rx: mpsc::UnboundedReceiver<()>,
) {
    let sandbox = shared.sandbox(rec.id());
    let engine = shared.docker.clone();
    if !adopted {
        shared.commit(&rec).await;
        if kill_rx.try_recv().is_ok() {
            killed_before_start(&shared, &mut rec).await;
            return;
        }
        let plan = match shared.container_plan(&rec.spec) {
            Ok(p) => p,
            Err(e) => {
                rec.set_state(TaskState::Failed, e.to_string(), now_millis());
                shared.commit(&rec).await;
                return;
            }
        };
        // A pull may take long: a kill meanwhile abandons the launch.
        let launched = tokio::select! {
            r = engine.launch(&plan) => Some(r),
            Some(()) = kill_rx.recv() => None,
        };
        match launched {
            None => {
                if let Err(e) = engine.remove(&plan.name).await {
                    tracing::warn!(task = %rec.id(), error = %e, "cannot remove the container of an abandoned launch");
                }
                killed_before_start(&shared, &mut rec).await;
                return;
            }
            Some(Err(e)) => {
                rec.set_state(TaskState::Failed, e.to_string(), now_millis());
                shared.commit(&rec).await;
                return;
            }
            Some(Ok(id)) => {
                let now = now_millis();
                tracing::info!(task = %rec.id(), container = %id, image = %plan.image, "container started");
                rec.container = Some(id);
                rec.started_at = Some(now);
                rec.set_state(TaskState::Running, "", now);
                shared.commit(&rec).await;
            }
        }
    }
    let Some(id) = rec.container.clone() else {
        rec.set_state(
            TaskState::Failed,
            "no container recorded for the task",
            now_millis(),
        );
        shared.commit(&rec).await;
        return;
    };
    let mut logs = crate::docker_logs::follow(engine.clone(), id.clone(), sandbox);
    let grace = exec::grace_of(rec.spec.kill_grace_seconds);
    let (ended, killed) = if rec.state == TaskState::Killing {
        (stop_container(&engine, &id, grace).await, true)
    } else {
        tokio::select! {
            r = engine.wait(&id) => (r, false),
            Some(()) = kill_rx.recv() => {
                let was_running = begin_kill(&shared, &mut rec).await;
                let r = match shared.drain(rec.id(), was_running, engine.wait(&id)).await {
                    Some(r) => r,
                    None => stop_container(&engine, &id, grace).await,
                };
                (r, true)
            }
        }
    };
    // All its output in the sandbox before the state says terminal (log followers end there).
    if tokio::time::timeout(LOGS_TAIL_TIMEOUT, &mut logs)
        .await
        .is_err()
    {
        logs.abort();
        tracing::warn!(task = %rec.id(), container = %id, "the container's last output was not all copied in time");
    }
    let out = match ended {
        Ok(state) => crate::docker::outcome(&state, killed),
        Err(e) => Outcome {
            state: if killed {
                TaskState::Killed
            } else {
                TaskState::Failed
            },
            message: match e {
                DockerError::Gone(_) if killed => "killed: no longer desired".into(),
                DockerError::Gone(_) => "the container was removed behind taskrun's back".into(),
                other => other.to_string(),
            },
            exit_code: 128 + libc::SIGKILL,
            exit: None,
        },
    };
    finish(&mut rec, out);
    shared.commit(&rec).await;
    // Recorded terminal first: an agent dying here leaves a container the next one sweeps.
    if let Err(e) = engine.remove(&id).await {
        tracing::warn!(task = %rec.id(), container = %id, error = %e, "cannot remove the container");
    }
}

/// Registers with offerd, retrying with backoff for as long as it takes.
async fn register(cfg: &AgentConfig, shared: &Shared, http_addr: &str) -> RegisterResponse {
    let backoff = Backoff {
        min: Duration::from_millis(200),
        max: Duration::from_secs(5),
    };
    let mut attempt = 0u32;
    loop {
        let reg = AgentRegistration {
            node: cfg.node.clone(),
            address: cfg.address.clone(),
            http_addr: http_addr.to_string(),
            resources: cfg.resources.clone(),
            attributes: cfg.attributes.clone(),
            tasks: shared.latest_statuses(),
        };
        match cfg
            .offerd
            .send_json(Method::POST, &["v1", "agents", "register"], Some(&reg))
            .await
        {
            Ok(resp) => {
                let answer = serde_json::from_slice::<RegisterResponse>(&resp.body)
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "offerd's registration answer is not understood; assuming a {DEFAULT_HEARTBEAT_MS} ms heartbeat");
                        RegisterResponse {
                            node: cfg.node.clone(),
                            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
                        }
                    });
                tracing::info!(node = %cfg.node, heartbeat_ms = answer.heartbeat_ms, tasks = reg.tasks.len(), "registered with offerd");
                return answer;
            }
            Err(e) => {
                attempt = attempt.saturating_add(1);
                if attempt == 1 || attempt.is_multiple_of(50) {
                    tracing::warn!(error = %e, attempt, "cannot register with offerd; retrying");
                } else {
                    tracing::debug!(error = %e, attempt, "cannot register with offerd; retrying");
                }
                tokio::time::sleep(backoff.delay(attempt)).await;
            }
        }
    }
}

/// The blocking-query timing for a heartbeat: wait half of it (at least 1 s).
pub fn watch_config(heartbeat_ms: u64) -> WatchConfig {
    WatchConfig {
        wait: Duration::from_millis(heartbeat_ms / 2).max(Duration::from_secs(1)),
        min_interval: Duration::from_millis(10),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
    }
}

/// Follows the desired set until offerd needs a new registration.
async fn follow(cfg: &AgentConfig, shared: &Arc<Shared>, heartbeat_ms: u64, reregister: &Notify) {
    let node = cfg.node.clone();
    let mut watch = Watch::new(
        cfg.offerd.clone(),
        QueryOptions::default(),
        watch_config(heartbeat_ms),
        move |client, opts| {
            let node = node.clone();
            async move {
                client
                    .get_json::<DesiredTasks>(&["v1", "agents", &node, "tasks"], &opts)
                    .await
            }
        },
    )
    .named(format!("desired tasks of node {}", cfg.node));
    loop {
        tokio::select! {
            _ = reregister.notified() => {
                tracing::info!("offerd does not know this node; registering again");
                return;
            }
            next = watch.next() => match next {
                Ok(desired) => shared.apply(&desired),
                Err(e) if e.status() == Some(404) => {
                    tracing::info!("offerd does not know this node; registering again");
                    return;
                }
                // Logged by the watch once per failure streak; its next read backs off.
                Err(e) => {
                    tracing::debug!(error = %e, "reading the desired tasks failed; retrying");
                }
            },
        }
    }
}

/// Rotates logs and collects old sandboxes until `stop`.
async fn housekeeping(shared: Arc<Shared>, rotate_bytes: u64, stop: CancellationToken) {
    let mut rotate = tokio::time::interval(ROTATE_EVERY);
    let mut gc = tokio::time::interval(GC_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = rotate.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.rotate_logs(rotate_bytes)).await;
            }
            _ = gc.tick() => {
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.collect_garbage()).await;
            }
        }
    }
}

/// Takes `<work-dir>/agent.lock` for the life of the returned file: two agents adopting and
/// killing the same tasks would fight forever. The lock goes with the process, even on
/// `kill -9`, and is not inherited by tasks (the file is close-on-exec).
fn lock_work_dir(work_dir: &Path) -> Result<std::fs::File, AgentError> {
    let path = work_dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| AgentError::WorkDir {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AgentError::Locked(work_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(source)) => Err(AgentError::WorkDir { path, source }),
    }
}

/// The address offerd and users reach the agent's API on (`bound`: the port bound, which
/// `--http-addr HOST:0` leaves to the kernel).
fn advertised_http(cfg: &AgentConfig, bound: SocketAddr) -> String {
    if bound.ip().is_unspecified() {
        let host = if cfg.address.contains(':') {
            format!("[{}]", cfg.address)
        } else {
            cfg.address.clone()
        };
        format!("{host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    mut cfg: AgentConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), AgentError> {
    // Tasks run with their sandbox as working directory: every path handed to them is absolute.
    cfg.work_dir = std::path::absolute(&cfg.work_dir).map_err(|source| AgentError::WorkDir {
        path: cfg.work_dir.clone(),
        source,
    })?;
    let tasks_dir = sandbox::tasks_dir(&cfg.work_dir);
    std::fs::create_dir_all(&tasks_dir).map_err(|source| AgentError::WorkDir {
        path: tasks_dir.clone(),
        source,
    })?;
    let _lock = lock_work_dir(&cfg.work_dir)?;
    cairn_http::raise_fd_limit(cfg.http_limits.max_connections);
    let bind_error = |source| AgentError::Bind {
        addr: cfg.http_addr,
        source,
    };
    let listener =
        cairn_http::listen(cfg.http_addr, cairn_http::LISTEN_BACKLOG).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let http_addr = advertised_http(&cfg, bound);
    tracing::info!(node = %cfg.node, address = %cfg.address, addr = %bound, http = %http_addr, resources = %cfg.resources, work_dir = %cfg.work_dir.display(), "taskrun agent starting");

    let stop = CancellationToken::new();
    let shared = Arc::new(Shared::new(&cfg));
    shared.recover().await;
    let reregister = Arc::new(Notify::new());

    let sender = tokio::spawn(crate::status::run_sender(
        shared.status.clone(),
        cfg.offerd.clone(),
        cfg.node.clone(),
        reregister.clone(),
        stop.clone(),
    ));
    let server = tokio::spawn(crate::http::serve(
        listener,
        cfg.http_limits,
        shared.clone(),
        stop.clone(),
    ));
    let registrar = Registrar {
        client: cfg.catalog.clone(),
        node: cfg.node.clone(),
        address: cfg.address.clone(),
        tasks: shared.clone(),
        wake: shared.catalog_wake.clone(),
    };
    let registrar = tokio::spawn(registrar.run(stop.clone()));
    let checks = tokio::spawn(healthcheck::agent::run(
        healthcheck::agent::CatalogChecks::new(cfg.catalog.clone(), &cfg.node),
        healthcheck::agent::CatalogSink(cfg.catalog.clone()),
        healthcheck::agent::AgentConfig {
            node: cfg.node.clone(),
            enable_script_checks: true,
            output_update_interval: Duration::from_secs(300),
        },
        stop.clone().cancelled_owned(),
    ));
    let housekeeper = tokio::spawn(housekeeping(
        shared.clone(),
        cfg.log_rotate_bytes,
        stop.clone(),
    ));

    let protocol = async {
        loop {
            let answer = register(&cfg, &shared, &http_addr).await;
            follow(&cfg, &shared, answer.heartbeat_ms, &reregister).await;
        }
    };
    tokio::select! {
        _ = shutdown => {}
        _ = protocol => {}
    }

    tracing::info!("stopping; tasks keep running and will be re-adopted");
    stop.cancel();
    let _ = tokio::time::timeout(STOP_TIMEOUT, sender).await;
    let _ = tokio::time::timeout(STOP_TIMEOUT, server).await;
    for handle in [registrar, checks, housekeeper] {
        handle.abort();
    }
    tracing::info!("taskrun agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_at_half_the_heartbeat() {
        assert_eq!(watch_config(20_000).wait, Duration::from_secs(10));
        assert_eq!(watch_config(500).wait, Duration::from_secs(1));
        assert_eq!(watch_config(0).wait, Duration::from_secs(1));
        assert_eq!(watch_config(20_000).backoff_max, Duration::from_secs(2));
    }

    /// A second agent on the same work dir is refused while the first holds it, and let in
    /// once the first is gone.
    #[test]
    fn one_agent_per_work_dir() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_work_dir(dir.path()).expect("first agent");
        assert!(matches!(
            lock_work_dir(dir.path()),
            Err(AgentError::Locked(p)) if p == dir.path()
        ));
        drop(first);
        lock_work_dir(dir.path()).expect("after the first agent stopped");
    }
}
