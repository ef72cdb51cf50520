//! The core: offerd's state as readers see it (a published snapshot), its one writer at a time,
//! and the store it is made durable in. Every change runs through [`Core::mutate`]: apply the
//! request to a copy, let the scheduler react, write everything touched in one store batch (on a
//! blocking thread), and only then publish the copy, wake the agents whose desired sets changed
//! and send the events. A request is acknowledged after its batch is on disk, so nothing
//! acknowledged is lost by `kill -9`, and a reader never sees a change that is not.
//!
//! A replica's core (`offerd serve --etcd`, [`crate::ha`]) is *fenced*: every batch carries a
//! compare on the term key its leader wrote when elected, so once a successor has written its
//! own, a deposed leader's writes fail in etcd. A core whose write fails is deposed for good
//! ([`Core::deposed`]): it refuses every later change and answers no agent, and the replica
//! drops it and reloads from etcd when it leads again. Without a fence a failed write stops
//! offerd (crash-only), as on one machine a restart is how memory and disk agree again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use cairn_cli::LockOrExit as _;
use cairn_marathon::{App, DesiredTasks, TaskStatusUpdate, now_millis};
use cairn_store::{Batch, Compare, Outcome, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::events::EventBus;
use crate::model::{Agent, AppEntry, Deployment, JobEntry, RunRecord, State, Task, run_key};
use crate::scheduler::{self, SchedulerConfig};
use crate::tx::Tx;

/// Store keys.
pub(crate) mod keys {
    pub const APPS: &str = "apps/";
    pub const VERSIONS: &str = "versions/";
    pub const TASKS: &str = "tasks/";
    pub const AGENTS: &str = "agents/";
    pub const DEPLOYMENTS: &str = "deployments/";
    pub const JOBS: &str = "jobs/";
    /// Active runs, `runs/<job id>/<run id>`.
    pub const RUNS: &str = "runs/";

    pub fn version(app_id: &str, version: &str) -> String {
        format!("{VERSIONS}{app_id}\u{0}{version}")
    }
}

/// What readers see: the last durable state, with each agent's desired-set index. Swapped
/// whole after every commit, so a reader never waits for a writer or a disk.
#[derive(Clone, Default)]
struct Published {
    state: State,
    /// Per agent: the store revision at which its desired set last changed.
    desired_index: imbl::HashMap<String, u64>,
}

/// An agent's desired set as it is answered: the [`DesiredTasks`] JSON of its tasks' specs,
/// joined from the encodings made once when each task was launched (see
/// [`crate::model::Tasks`]).
#[derive(Debug)]
pub struct DesiredSet {
    json: Vec<u8>,
    len: usize,
}

impl DesiredSet {
    /// Joins the specs of `node`'s desired tasks (each a JSON object) into
    /// `{"tasks":[...]}`, what serde would write.
    fn join(tasks: &crate::model::Tasks, node: &str) -> DesiredSet {
        let specs = || tasks.desired_on(node);
        let size: usize = specs().map(|s| s.len() + 1).sum();
        let mut json = Vec::with_capacity(size + 16);
        json.extend_from_slice(b"{\"tasks\":[");
        let mut len = 0;
        for spec in specs() {
            if len > 0 {
                json.push(b',');
            }
            json.extend_from_slice(spec);
            len += 1;
        }
        json.extend_from_slice(b"]}");
        DesiredSet { json, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The [`DesiredTasks`] JSON of the set.
    pub fn to_json(&self) -> &[u8] {
        &self.json
    }

    /// The JSON, for the answer's body.
    pub fn into_json(self) -> Vec<u8> {
        self.json
    }

    /// The set decoded, as an agent reads it.
    pub fn decode(&self) -> Result<DesiredTasks, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("store: {0}")]
    Store(#[from] cairn_store::StoreError),
    /// A stored record that does not decode: offerd's durable data is damaged.
    #[error("stored record {key:?} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// A record that cannot be encoded: the change is refused rather than stored empty.
    #[error("cannot encode record {key:?}: {reason}")]
    Encode { key: String, reason: String },
    /// This replica no longer leads (a fenced write failed, or its election term ended): the
    /// change was not made; the leader takes it.
    #[error("this offerd replica is no longer the leader; retry (the leader takes the request)")]
    Deposed,
    /// A status report was taken into a change whose request went away before it could say
    /// how the change ended: it may or may not be applied (applying it again changes nothing).
    #[error("the change carrying this report was interrupted; retry")]
    Interrupted,
}

impl CoreError {
    /// The same failure, for each of the status reports one change carried.
    fn for_each_report(&self) -> CoreError {
        match self {
            CoreError::Deposed => CoreError::Deposed,
            CoreError::Interrupted => CoreError::Interrupted,
            other => CoreError::Store(cairn_store::StoreError::Backend(other.to_string().into())),
        }
    }
}

/// Whether a change is followed by a full scheduling round or one over what it touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// [`scheduler::reconcile`]: every agent, task, app and deployment (the timer's round).
    Full,
    /// [`scheduler::reconcile_touched`]: the apps the change touched and those queued.
    Touched,
}

/// Status updates of one agent's report, waiting for the change that applies them (see
/// [`Core::report_status`]).
struct Report {
    node: String,
    updates: Vec<TaskStatusUpdate>,
    done: tokio::sync::oneshot::Sender<Result<(), CoreError>>,
}

/// What the commit of a change needs after the caller may have gone away: it runs to the end
/// on a blocking thread even if the request that started it is dropped.
struct Shared {
    store: Arc<dyn Store>,
    current: ArcSwap<Published>,
    events: EventBus,
    desired_changed: watch::Sender<u64>,
    /// Per agent with a parked desired-set poll: the signal it waits on, sent when that agent's
    /// desired set or record changes (a change wakes its own agents' polls, not all of them).
    node_signals: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Where stale catalog services go to be deregistered (see [`Core::stale_services`]).
    stale_tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    /// A replica's fence: the compare every batch carries (the term key at the revision its
    /// leader wrote it). `None` on one machine.
    fence: Option<Compare>,
    /// Cancelled once this core may not write any more (see [`Core::deposed`]).
    deposed: CancellationToken,
    /// The newest store revision this core wrote or loaded at: an agent that saw a newer one
    /// was answered by another leader since.
    latest: AtomicU64,
    /// Running totals for `/metrics`, since this core started.
    counters: Counters,
}

/// What `/metrics` counts, since the core started (memory only).
#[derive(Debug, Default)]
pub struct Counters {
    /// Tasks placed on agents.
    pub placements: AtomicU64,
    /// Deployments finished, and their durations added up (ms).
    pub deployments_finished: AtomicU64,
    pub deployment_ms: AtomicU64,
}

/// offerd's state and its durable home.
///
/// Readers load the published snapshot ([`Core::read`], [`Core::desired_tasks`]) and never wait
/// for a writer. Writers ([`Core::mutate`]) are serialized by an async mutex, change a clone,
/// and commit it to the store on a blocking thread; the clone is published after the commit.
/// Agents' heartbeats are memory only: a map beside the state, folded into the next change.
pub struct Core {
    shared: Arc<Shared>,
    /// Held from taking the snapshot to publishing the result: one writer at a time, each
    /// starting from the previous one's state.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Per agent: when it was last heard from (Unix ms). Not durable: after a restart every
    /// agent gets a full timeout anyway.
    heartbeats: Mutex<HashMap<String, u64>>,
    stale_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>>,
    /// Status reports waiting to be applied, all in the next change (see
    /// [`Core::report_status`]).
    reports: Mutex<Vec<Report>>,
    /// Index for agents with no recorded change (the revision at load).
    base_index: u64,
    last_version_ms: AtomicU64,
    pub events: EventBus,
    pub cfg: SchedulerConfig,
    pub started_ms: u64,
}

fn load_prefix<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    prefix: &str,
) -> Result<Vec<T>, cairn_store::StoreError> {
    let mut out = Vec::new();
    for (key, entry) in store.scan_prefix(prefix.as_bytes())? {
        let v =
            serde_json::from_slice(&entry.value).map_err(|_| cairn_store::StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                reason: "not a valid offerd record",
            })?;
        out.push(v);
    }
    Ok(out)
}

impl Core {
    /// Loads the state from `store`. Agents get a full `agent_timeout` from now to be heard
    /// from again before their tasks are declared lost.
    pub fn open(store: Arc<dyn Store>, cfg: SchedulerConfig) -> Result<Core, CoreError> {
        Core::load(store, cfg, None)
    }

    /// [`Core::open`] for a replica's leader: every batch it commits (the clean-up at load
    /// included) carries `fence`, and a batch refused by it, or failing at all, deposes the
    /// core instead of stopping offerd.
    pub fn open_fenced(
        store: Arc<dyn Store>,
        cfg: SchedulerConfig,
        fence: Compare,
    ) -> Result<Core, CoreError> {
        Core::load(store, cfg, Some(fence))
    }

    fn load(
        store: Arc<dyn Store>,
        cfg: SchedulerConfig,
        fence: Option<Compare>,
    ) -> Result<Core, CoreError> {
        let now = now_millis();
        let mut state = State::default();
        for mut e in load_prefix::<AppEntry>(&*store, keys::APPS)? {
            e.app = cairn_marathon::canonical(e.app);
            state.apps.insert(e.app.id.clone(), e);
        }
        for t in load_prefix::<Task>(&*store, keys::TASKS)? {
            state.tasks.insert(t);
        }
        for mut a in load_prefix::<Agent>(&*store, keys::AGENTS)? {
            // A full timeout from now for agents that were active; a lost agent keeps the time
            // it was last heard from, which its retention counts from.
            if !a.lost {
                a.last_seen_ms = now;
            }
            state.agents.insert(a.node.clone(), a);
        }
        for d in load_prefix::<Deployment>(&*store, keys::DEPLOYMENTS)? {
            state.deployments.insert(d);
        }
        for j in load_prefix::<JobEntry>(&*store, keys::JOBS)? {
            state.jobs.insert(j.spec.id.clone(), j);
        }
        for r in load_prefix::<RunRecord>(&*store, keys::RUNS)? {
            state.runs.insert(run_key(&r.job_id, &r.id), r);
        }
        drop_unlisted_versions(&*store, &state, fence.as_ref())?;
        // On etcd the revision is the cluster's, past the term key this leader wrote: above
        // every index a previous leader gave the agents, so each is answered its whole
        // desired set at once.
        let base_index = store.revision().max(1);
        tracing::info!(
            apps = state.apps.len(),
            tasks = state.tasks.len(),
            agents = state.agents.len(),
            deployments = state.deployments.len(),
            jobs = state.jobs.len(),
            runs = state.runs.len(),
            "state loaded"
        );
        let (stale_tx, stale_rx) = tokio::sync::mpsc::unbounded_channel();
        let events = EventBus::default();
        Ok(Core {
            shared: Arc::new(Shared {
                store,
                current: ArcSwap::from_pointee(Published {
                    state,
                    desired_index: imbl::HashMap::new(),
                }),
                events: events.clone(),
                desired_changed: watch::channel(base_index).0,
                node_signals: Mutex::new(HashMap::new()),
                stale_tx,
                fence,
                deposed: CancellationToken::new(),
                latest: AtomicU64::new(base_index),
                counters: Counters::default(),
            }),
            writer: Arc::new(tokio::sync::Mutex::new(())),
            heartbeats: Mutex::new(HashMap::new()),
            stale_rx: Mutex::new(Some(stale_rx)),
            reports: Mutex::new(Vec::new()),
            base_index,
            last_version_ms: AtomicU64::new(now),
            events,
            cfg,
            started_ms: now,
        })
    }

    /// Running totals since this core started.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// Reads the last durable state (never waits for a writer).
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.current.load().state)
    }

    /// A fresh, strictly increasing version timestamp (Unix ms).
    pub fn next_version_ms(&self) -> u64 {
        let now = now_millis();
        let prev = self
            .last_version_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            // The closure always returns Some.
            .unwrap_or_else(|last| last);
        now.max(prev + 1)
    }

    /// Applies a change. `f` changes a clone of the state; an `Err` from it (or a record that
    /// cannot be encoded) drops the clone, so a refused change leaves no trace. Then the
    /// scheduler reacts, everything touched is committed in one store batch on a blocking
    /// thread, and only then is the new state published, agents woken and events sent.
    ///
    /// A store that cannot write is fatal: memory would be ahead of the disk, so offerd exits
    /// and its supervisor restarts it from the last durable state (crash-only).
    pub async fn mutate<R, E>(
        &self,
        f: impl FnOnce(&mut State, &mut Tx) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<CoreError>,
    {
        let writer = self.writer.clone().lock_owned().await;
        self.mutate_locked(writer, f, Round::Touched).await
    }

    /// The timer's scheduling round: a change of nothing followed by a full round, which looks
    /// at everything (agents' timeouts, health kills, every app and deployment), so whatever
    /// the rounds after single changes did not visit is still acted on.
    pub async fn tick(&self) -> Result<(), CoreError> {
        let writer = self.writer.clone().lock_owned().await;
        self.mutate_locked(writer, |_, _| Ok(()), Round::Full).await
    }

    /// [`Core::mutate`] with the writer lock already held.
    async fn mutate_locked<R, E>(
        &self,
        writer: tokio::sync::OwnedMutexGuard<()>,
        f: impl FnOnce(&mut State, &mut Tx) -> Result<R, E>,
        round: Round,
    ) -> Result<R, E>
    where
        E: From<CoreError>,
    {
        if self.shared.deposed.is_cancelled() {
            return Err(CoreError::Deposed.into());
        }
        let mut next = self.shared.current.load().state.clone();
        let now = now_millis();
        self.fold_heartbeats(&mut next, now);
        let mut tx = Tx::new(now);
        tx.job_history = self.cfg.job_history;
        // Events are made only while someone listens: a subscriber that arrives while this
        // change is being made sees the changes after it.
        tx.events_wanted = self.shared.events.subscribers() > 0;
        let r = f(&mut next, &mut tx)?;
        match round {
            Round::Full => scheduler::reconcile(&mut next, &mut tx, &self.cfg),
            Round::Touched => scheduler::reconcile_touched(&mut next, &mut tx, &self.cfg),
        }
        let mut batch = batch_of(&next, &tx)?;
        if batch.is_empty() {
            self.shared.publish(next, tx, None);
            return Ok(r);
        }
        if let Some(fence) = &self.shared.fence {
            batch.compares.push(fence.clone());
        }
        let shared = self.shared.clone();
        // The commit and the publication run to the end even if this request is dropped, and
        // the writer lock is held until then: the next change starts from this one's state.
        let done = tokio::task::spawn_blocking(move || {
            let (written, previous) = shared.commit(next, tx, batch);
            // The next change may start; the state this one replaced is freed meanwhile (the
            // nodes of its maps that this change copied are its own).
            drop(writer);
            drop(previous);
            written
        })
        .await;
        match done {
            Ok(true) => Ok(r),
            Ok(false) => Err(CoreError::Deposed.into()),
            Err(e) if self.shared.fence.is_some() => {
                // A replica drops this state and reloads from etcd.
                tracing::error!(error = %e, "committing a change failed; stepping down");
                self.shared.deposed.cancel();
                Err(CoreError::Deposed.into())
            }
            // A panic while committing: the state in memory may not match the disk.
            Err(e) => cairn_cli::exit_crash(&format!(
                "committing a change failed ({e}); exiting so a restart reloads the last durable state"
            )),
        }
    }

    /// Ends this core's term: no change is made through it any more, and parked agent polls
    /// are answered 503 so that the agents ask the leader. Idempotent.
    pub fn depose(&self) {
        self.shared.deposed.cancel();
    }

    /// Resolves once this core may not write any more: [`Core::depose`], or a fenced write
    /// failed (a successor wrote its term key, or etcd could not be written).
    pub fn deposed(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.shared.deposed.cancelled()
    }

    /// Whether [`Core::deposed`] has resolved.
    pub fn is_deposed(&self) -> bool {
        self.shared.deposed.is_cancelled()
    }

    /// Copies the agents' latest heartbeats into `state` (memory only: no record is touched).
    /// A heartbeat is copied once it is [`Core::heartbeat_step`] newer than the record, or as
    /// soon as the record comes within that step of the agent timeout: agents poll all the
    /// time, and copying 1,000 agents' records in every change was most of a small change,
    /// while an agent is still declared lost exactly `--agent-timeout` after it was last heard
    /// from (the record then is its last heartbeat).
    fn fold_heartbeats(&self, state: &mut State, now: u64) {
        let timeout = self.cfg.agent_timeout.as_millis() as u64;
        let step = self.heartbeat_step();
        let mut beats = self.heartbeats.lock_or_exit("agent heartbeats");
        // Agents forgotten meanwhile need no heartbeat.
        beats.retain(|node, _| state.agents.contains_key(node));
        for (node, &seen) in beats.iter() {
            if let Some(a) = state.agents.get(node)
                && a.last_seen_ms < seen
                && (seen - a.last_seen_ms >= step
                    || now.saturating_sub(a.last_seen_ms) + step >= timeout)
                && let Some(a) = state.agents.get_mut(node)
            {
                a.last_seen_ms = seen;
            }
        }
    }

    /// How far an agent's record may lag its heartbeats: a tenth of the agent timeout, at
    /// most a second.
    fn heartbeat_step(&self) -> u64 {
        (self.cfg.agent_timeout.as_millis() as u64 / 10).min(1000)
    }

    /// The agents' newest heartbeats (Unix ms), which the state's records may lag (see
    /// [`Core::fold_heartbeats`]).
    pub fn heartbeats(&self) -> HashMap<String, u64> {
        self.heartbeats.lock_or_exit("agent heartbeats").clone()
    }

    fn heartbeat(&self, node: &str) {
        self.heartbeats
            .lock_or_exit("agent heartbeats")
            .insert(node.to_string(), now_millis());
    }

    /// The stream of catalog services to deregister, for the one task that does it.
    pub fn stale_services(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>> {
        self.stale_rx.lock_or_exit("stale services receiver").take()
    }

    /// One stored version of an app (read on a blocking thread: it is a disk read).
    pub async fn version(&self, app_id: &str, version: &str) -> Result<Option<App>, CoreError> {
        let store = self.shared.store.clone();
        let key = keys::version(app_id, version);
        let entry = tokio::task::spawn_blocking(move || store.get(key.as_bytes()))
            .await
            .map_err(|e| CoreError::Store(cairn_store::StoreError::Backend(Box::new(e))))??;
        let Some(entry) = entry else {
            return Ok(None);
        };
        serde_json::from_slice(&entry.value)
            .map(Some)
            .map_err(|e| CoreError::Corrupt {
                key: keys::version(app_id, version).replace('\u{0}', "@"),
                reason: e.to_string(),
            })
    }

    /// The desired set of `node` once its index passes `index` or `wait` runs out, with the
    /// index to block on next. `Ok(None)` when the node is unknown (it must register). Every
    /// call counts as the agent's heartbeat. Answered from the published snapshot.
    ///
    /// A fenced core answers [`CoreError::Deposed`] once deposed, and to an agent whose index
    /// is newer than anything it wrote or loaded (another leader answered that agent since):
    /// a stale set would have the agent kill what a newer leader launched.
    pub async fn desired_tasks(
        &self,
        node: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Option<(DesiredSet, u64)>, CoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut signal = NodeSignal::subscribe(&self.shared, node);
        let changed = &mut signal.rx;
        loop {
            changed.borrow_and_update();
            if self.shared.fence.is_some()
                && (self.is_deposed() || index > self.shared.latest.load(Ordering::SeqCst))
            {
                return Err(CoreError::Deposed);
            }
            let lost = {
                let snap = self.shared.current.load();
                let Some(agent) = snap.state.agents.get(node) else {
                    return Ok(None);
                };
                self.heartbeat(node);
                let current = snap
                    .desired_index
                    .get(node)
                    .copied()
                    .unwrap_or(self.base_index);
                if !agent.lost
                    && (current > index || index == 0 || tokio::time::Instant::now() >= deadline)
                {
                    let set = DesiredSet::join(&snap.state.tasks, node);
                    return Ok(Some((set, current)));
                }
                agent.lost
            };
            if lost {
                match self.agent_returned(node).await {
                    Ok(()) => continue,
                    // Logged; the poll waits like any other and tries again.
                    Err(e) => {
                        tracing::error!(%node, error = %e, "recording a returning agent failed")
                    }
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                () = self.shared.deposed.cancelled() => {}
            }
        }
    }

    /// A lost agent is heard from again: it is active, and its desired set (without the tasks
    /// that were replaced meanwhile) tells it what to kill.
    async fn agent_returned(&self, node: &str) -> Result<(), CoreError> {
        self.mutate(|s, tx| {
            if let Some(a) = s.agents.get_mut(node) {
                a.lost = false;
                a.last_seen_ms = tx.now_ms;
                tx.agent(node);
                tx.nodes.insert(node.to_string());
                tracing::info!(node, "lost agent is back");
            }
            Ok(())
        })
        .await
    }

    /// A receiver that sees every committed change to tasks or agents (offers long-poll on it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.shared.desired_changed.subscribe()
    }

    /// Applies an agent's status updates. Reports are coalesced: whichever report gets the
    /// writer applies every report queued by then in one change (one scheduling round, one
    /// store commit), and each is answered once that change is durable. 1,000 agents reporting
    /// at once so cost a few commits, not 1,000, and no report waits for more than the change
    /// before its own.
    pub async fn report_status(
        &self,
        node: &str,
        updates: Vec<TaskStatusUpdate>,
    ) -> Result<(), CoreError> {
        let (done, mut answer) = tokio::sync::oneshot::channel();
        self.reports.lock_or_exit("status reports").push(Report {
            node: node.to_string(),
            updates,
            done,
        });
        let writer = tokio::select! {
            biased;
            r = &mut answer => return r.unwrap_or(Err(CoreError::Interrupted)),
            writer = self.writer.clone().lock_owned() => writer,
        };
        // With the writer held no other change is draining the queue: empty means this report
        // went into the change before, which answers it.
        if self.reports.lock_or_exit("status reports").is_empty() {
            drop(writer);
            return answer.await.unwrap_or(Err(CoreError::Interrupted));
        }
        let mut taken = Vec::new();
        let r = self
            .mutate_locked(
                writer,
                |s, tx| {
                    taken = std::mem::take(&mut *self.reports.lock_or_exit("status reports"));
                    for report in &taken {
                        for u in &report.updates {
                            scheduler::apply_status(s, tx, &report.node, u);
                        }
                    }
                    Ok::<_, CoreError>(())
                },
                Round::Touched,
            )
            .await;
        for report in taken {
            let _ = report
                .done
                .send(r.as_ref().map(|_| ()).map_err(CoreError::for_each_report));
        }
        answer.await.unwrap_or(Err(CoreError::Interrupted))
    }

    /// Marks an agent as heard from (status posts); false when it is not registered.
    pub fn touch_agent(&self, node: &str) -> bool {
        let known = self.read(|s| s.agents.contains_key(node));
        if known {
            self.heartbeat(node);
        }
        known
    }
}

/// A desired-set poll's subscription to its agent's signal; the signal is dropped with the last
/// poll of that agent, so the map holds only agents with a poll parked.
struct NodeSignal<'a> {
    shared: &'a Shared,
    node: &'a str,
    rx: watch::Receiver<u64>,
}

impl<'a> NodeSignal<'a> {
    fn subscribe(shared: &'a Shared, node: &'a str) -> NodeSignal<'a> {
        let mut signals = shared.node_signals.lock_or_exit("agent poll signals");
        let rx = match signals.get(node) {
            Some(signal) => signal.subscribe(),
            None => {
                let (signal, rx) = watch::channel(0);
                signals.insert(node.to_string(), signal);
                rx
            }
        };
        NodeSignal { shared, node, rx }
    }
}

impl Drop for NodeSignal<'_> {
    fn drop(&mut self) {
        let mut signals = self.shared.node_signals.lock_or_exit("agent poll signals");
        // Under the lock nobody subscribes meanwhile: this poll's receiver the only one left
        // means no other poll of the agent is parked.
        if signals
            .get(self.node)
            .is_some_and(|signal| signal.receiver_count() <= 1)
        {
            signals.remove(self.node);
        }
    }
}

impl Shared {
    /// Makes the batch durable, then publishes `next`; false when it was not written (a fenced
    /// core is deposed then), with the state it replaced. Runs on a blocking thread.
    fn commit(&self, next: State, tx: Tx, batch: Batch) -> (bool, Option<Arc<Published>>) {
        let revision = match (self.store.commit(batch), &self.fence) {
            (Ok(Outcome::Applied(r)), _) => r,
            (Ok(Outcome::CompareFailed(_)), Some(_)) => {
                tracing::error!(
                    "a newer leader has written its term key: this replica's write was refused by etcd; stepping down"
                );
                self.deposed.cancel();
                return (false, None);
            }
            (Err(e), Some(_)) => {
                // Maybe applied, maybe not: only a reload from etcd knows.
                tracing::error!(error = %e, "cannot write the state to etcd; stepping down (the state is reloaded from etcd when this replica leads again)");
                self.deposed.cancel();
                return (false, None);
            }
            (Ok(Outcome::CompareFailed(_)), None) => {
                // No compares are sent, so this cannot happen; treat it as a store fault.
                cairn_cli::exit_crash(
                    "unexpected compare failure writing the state; exiting so a restart reloads the last durable state",
                );
            }
            (Err(e), None) => {
                cairn_cli::exit_crash(&format!(
                    "cannot write the state ({e}); exiting so a restart reloads the last durable state"
                ));
            }
        };
        self.latest.fetch_max(revision, Ordering::SeqCst);
        (true, Some(self.publish(next, tx, Some(revision))))
    }

    /// Makes `next` what readers see, then wakes the agents whose desired set changed and sends
    /// the events. `revision`: the store revision of the change (None: nothing was written).
    /// Returns what readers saw before, for the caller to drop when it suits it.
    fn publish(&self, next: State, tx: Tx, revision: Option<u64>) -> Arc<Published> {
        let mut desired_index = self.current.load().desired_index.clone();
        if let Some(revision) = revision {
            for node in &tx.nodes {
                desired_index.insert(node.clone(), revision);
            }
        }
        let previous = self.current.swap(Arc::new(Published {
            state: next,
            desired_index,
        }));
        if let Some(revision) = revision {
            if !tx.nodes.is_empty() || !tx.agents.is_empty() {
                let signals = self.node_signals.lock_or_exit("agent poll signals");
                for node in tx.nodes.iter().chain(tx.agents.iter()) {
                    if let Some(signal) = signals.get(node) {
                        signal.send_replace(revision);
                    }
                }
            }
            // Offers follow every change to tasks or agents (resources freed or taken).
            if !tx.nodes.is_empty() || !tx.agents.is_empty() || !tx.tasks.is_empty() {
                self.desired_changed.send_replace(revision);
            }
        }
        let c = &self.counters;
        c.placements.fetch_add(tx.placements, Ordering::Relaxed);
        for ms in &tx.finished_deployments {
            c.deployments_finished.fetch_add(1, Ordering::Relaxed);
            c.deployment_ms.fetch_add(*ms, Ordering::Relaxed);
        }
        for e in tx.events {
            self.events.publish(e);
        }
        for s in tx.stale_services {
            // Nobody listening (no catalog configured) is fine.
            let _ = self.stale_tx.send(s);
        }
        previous
    }
}

/// Deletes stored versions that no app lists (left by offerd releases that did not prune them,
/// beyond [`crate::model::MAX_VERSIONS`]), so the store stops growing.
fn drop_unlisted_versions(
    store: &dyn Store,
    state: &State,
    fence: Option<&Compare>,
) -> Result<(), CoreError> {
    let mut batch = Batch::default();
    for (key, _) in store.scan_prefix(keys::VERSIONS.as_bytes())? {
        let name = String::from_utf8_lossy(&key[keys::VERSIONS.len()..]).into_owned();
        let listed = name.split_once('\u{0}').is_some_and(|(app_id, version)| {
            state
                .apps
                .get(app_id)
                .is_some_and(|e| e.versions.iter().any(|v| v == version))
        });
        if !listed {
            batch.delete(key);
        }
    }
    if !batch.is_empty() {
        tracing::info!(
            versions = batch.ops.len(),
            "dropping stored app versions beyond the kept ones"
        );
        batch.compares.extend(fence.cloned());
        if let Outcome::CompareFailed(_) = store.commit(batch)? {
            // Only a fenced batch has a compare: a successor wrote its term key meanwhile.
            return Err(CoreError::Deposed);
        }
    }
    Ok(())
}

/// The store batch of everything `tx` touched, as it is in `state`; an error when a record
/// cannot be encoded (the change is refused).
fn batch_of(state: &State, tx: &Tx) -> Result<Batch, CoreError> {
    let mut batch = Batch::default();
    if tx.is_empty() {
        return Ok(batch);
    }
    fn put<T: serde::Serialize>(
        batch: &mut Batch,
        key: String,
        v: Option<&T>,
    ) -> Result<(), CoreError> {
        match v {
            Some(v) => {
                let bytes = to_json(&key, v)?;
                batch.put(key, bytes);
            }
            None => batch.delete(key),
        }
        Ok(())
    }
    for id in &tx.apps {
        put(
            &mut batch,
            format!("{}{id}", keys::APPS),
            state.apps.get(id),
        )?;
        if !state.apps.contains_key(id) {
            batch.ops.push(cairn_store::Op::DeletePrefix {
                prefix: format!("{}{id}\u{0}", keys::VERSIONS).into_bytes(),
            });
        }
    }
    for app in &tx.versions {
        let v = app.version.clone().unwrap_or_default();
        put(&mut batch, keys::version(&app.id, &v), Some(app))?;
    }
    for (app_id, v) in &tx.dropped_versions {
        batch.delete(keys::version(app_id, v));
    }
    for id in &tx.tasks {
        put(
            &mut batch,
            format!("{}{id}", keys::TASKS),
            state.tasks.get(id),
        )?;
    }
    for id in &tx.agents {
        put(
            &mut batch,
            format!("{}{id}", keys::AGENTS),
            state.agents.get(id),
        )?;
    }
    for id in &tx.deployments {
        put(
            &mut batch,
            format!("{}{id}", keys::DEPLOYMENTS),
            state.deployments.get(id),
        )?;
    }
    for id in &tx.jobs {
        put(
            &mut batch,
            format!("{}{id}", keys::JOBS),
            state.jobs.get(id),
        )?;
    }
    for key in &tx.runs {
        put(
            &mut batch,
            format!("{}{key}", keys::RUNS),
            state.runs.get(key),
        )?;
    }
    Ok(batch)
}

/// A record as stored (JSON); `key` names it in the error.
fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>, CoreError> {
    serde_json::to_vec(v).map_err(|e| CoreError::Encode {
        key: key.replace('\u{0}', "@"),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::MemStore;

    /// A request's own refusal.
    #[derive(Debug)]
    struct Refused;
    impl From<CoreError> for Refused {
        fn from(e: CoreError) -> Self {
            panic!("unexpected core error: {e}")
        }
    }

    fn open(store: &Arc<MemStore>) -> Core {
        let store: Arc<dyn Store> = store.clone();
        Core::open(store, SchedulerConfig::new(Duration::from_secs(3600))).expect("open")
    }

    fn app_entry(id: &str) -> AppEntry {
        let app = cairn_marathon::parse_app(
            serde_json::json!({ "id": id, "cmd": "sleep 1000", "instances": 0 }),
            None,
        )
        .expect("valid app");
        scheduler::next_version(None, app, 1_000, false, None)
    }

    fn stored_keys(store: &MemStore) -> Vec<String> {
        store
            .scan_prefix(b"")
            .expect("scan")
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn a_change_refused_part_way_leaves_state_and_store_as_they_were() {
        let store = Arc::new(MemStore::new());
        let core = open(&store);
        core.mutate(|s, tx| {
            let e = app_entry("/a");
            tx.version(&e.app);
            tx.app("/a");
            s.apps.insert("/a".into(), e);
            Ok::<_, CoreError>(())
        })
        .await
        .expect("first change");
        let revision = store.revision();
        let keys = stored_keys(&store);

        // Changes one app, adds another, then refuses (as a later app of a multi-app request
        // locked by a deployment does).
        let r: Result<(), Refused> = core
            .mutate(|s, tx| {
                if let Some(e) = s.apps.get_mut("/a") {
                    e.app.instances = 7;
                }
                tx.app("/a");
                let b = app_entry("/b");
                tx.version(&b.app);
                tx.app("/b");
                s.apps.insert("/b".into(), b);
                Err(Refused)
            })
            .await;
        assert!(matches!(r, Err(Refused)));
        core.read(|s| {
            assert_eq!(s.apps.keys().collect::<Vec<_>>(), vec!["/a"]);
            assert_eq!(s.apps["/a"].app.instances, 0);
        });
        assert_eq!(store.revision(), revision, "nothing committed");
        assert_eq!(stored_keys(&store), keys);
    }

    /// A store whose commits wait, once held, until released: a slow disk.
    struct SlowDisk {
        inner: MemStore,
        held: Mutex<bool>,
        released: std::sync::Condvar,
        entered: tokio::sync::Notify,
    }

    impl SlowDisk {
        fn hold(&self, on: bool) {
            *self.held.lock().unwrap() = on;
            self.released.notify_all();
        }
    }

    impl Store for SlowDisk {
        fn get(&self, key: &[u8]) -> Result<Option<cairn_store::Entry>, cairn_store::StoreError> {
            self.inner.get(key)
        }
        fn scan_prefix(
            &self,
            prefix: &[u8],
        ) -> Result<Vec<(Vec<u8>, cairn_store::Entry)>, cairn_store::StoreError> {
            self.inner.scan_prefix(prefix)
        }
        fn commit(&self, batch: Batch) -> Result<Outcome, cairn_store::StoreError> {
            let mut held = self.held.lock().unwrap();
            if *held {
                self.entered.notify_one();
            }
            while *held {
                held = self.released.wait(held).unwrap();
            }
            self.inner.commit(batch)
        }
        fn revision(&self) -> cairn_store::Revision {
            self.inner.revision()
        }
        fn subscribe(&self) -> watch::Receiver<cairn_store::Revision> {
            self.inner.subscribe()
        }
    }

    /// Waits for `f` with a deadline far beyond any scheduling delay: if it does not finish,
    /// it is blocked behind the commit held by the test.
    async fn answered<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(30), f)
            .await
            .unwrap_or_else(|_| panic!("{what} waited for a commit in progress"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_and_agent_polls_are_answered_while_a_commit_waits_for_the_disk() {
        let disk = Arc::new(SlowDisk {
            inner: MemStore::new(),
            held: Mutex::new(false),
            released: std::sync::Condvar::new(),
            entered: tokio::sync::Notify::new(),
        });
        let store: Arc<dyn Store> = disk.clone();
        let core = Arc::new(
            Core::open(store, SchedulerConfig::new(Duration::from_secs(3600))).expect("open"),
        );
        core.mutate(|s, tx| {
            let agent = Agent {
                node: "n1".into(),
                address: "127.0.0.1".into(),
                http_addr: String::new(),
                resources: Default::default(),
                attributes: Default::default(),
                lost: false,
                draining: false,
                last_seen_ms: tx.now_ms,
            };
            s.agents.insert("n1".into(), agent);
            tx.agent("n1");
            Ok::<_, CoreError>(())
        })
        .await
        .expect("register");

        disk.hold(true);
        let entered = disk.entered.notified();
        let writer = {
            let core = core.clone();
            tokio::spawn(async move {
                core.mutate(|s, tx| {
                    let e = app_entry("/slow");
                    tx.version(&e.app);
                    tx.app("/slow");
                    s.apps.insert("/slow".into(), e);
                    Ok::<_, CoreError>(())
                })
                .await
            })
        };
        answered("the writer reaching the disk", entered).await;

        // The commit is in progress: readers see the last durable state at once.
        assert!(
            core.read(|s| s.apps.is_empty()),
            "an undurable change is not visible"
        );
        let (desired, _) = answered(
            "an agent's poll",
            core.desired_tasks("n1", 0, Duration::from_secs(60)),
        )
        .await
        .expect("not fenced")
        .expect("n1 is registered");
        assert!(desired.is_empty());
        assert!(core.touch_agent("n1"), "a heartbeat needs no write");
        assert!(!writer.is_finished());

        disk.hold(false);
        answered("the writer", writer)
            .await
            .expect("writer task")
            .expect("committed");
        assert!(core.read(|s| s.apps.contains_key("/slow")));
    }

    /// Writes the term key as an elected leader would; the fence on it.
    fn elect(store: &MemStore, who: &str) -> Compare {
        let mut batch = Batch::default();
        batch.put("term", who.as_bytes().to_vec());
        match store.commit(batch).expect("term written") {
            Outcome::Applied(revision) => Compare {
                key: b"term".to_vec(),
                revision,
            },
            Outcome::CompareFailed(_) => unreachable!("no compare"),
        }
    }

    fn register(s: &mut State, tx: &mut Tx, node: &str) {
        let agent = Agent {
            node: node.into(),
            address: "127.0.0.1".into(),
            http_addr: String::new(),
            resources: Default::default(),
            attributes: Default::default(),
            lost: false,
            draining: false,
            last_seen_ms: tx.now_ms,
        };
        s.agents.insert(node.into(), agent);
        tx.agent(node);
        tx.nodes.insert(node.into());
    }

    /// A heartbeat reaches the agent's record once it is a step (a tenth of the timeout, at
    /// most 1 s) newer, or once the record is within a step of the timeout; whatever lags,
    /// a scheduling round declares the agent lost exactly when its last heartbeat is older
    /// than the timeout.
    #[test]
    fn heartbeats_reach_the_record_by_steps_and_always_before_the_timeout() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let cfg = SchedulerConfig::new(Duration::from_secs(10));
        let core = Core::open(store, cfg.clone()).expect("open");
        assert_eq!(core.heartbeat_step(), 1000);
        // (record, heartbeat, now) -> the record after folding.
        let cases: [(u64, u64, u64, u64); 6] = [
            (10_000, 10_500, 10_600, 10_000), // less than a step newer: left
            (10_000, 11_000, 11_100, 11_000), // a step newer: copied
            (10_000, 10_999, 19_000, 10_999), // within a step of the timeout: copied
            (10_000, 10_999, 18_999, 10_000), // not yet within it: left
            (10_000, 9_000, 30_000, 10_000),  // older than the record: never copied
            (10_000, 10_001, 25_000, 10_001), // past the timeout: copied (not lost)
        ];
        for (record, beat, now, want) in cases {
            let mut s = State::default();
            let mut tx = Tx::new(record);
            register(&mut s, &mut tx, "n1");
            core.heartbeats
                .lock()
                .expect("heartbeats")
                .insert("n1".into(), beat);
            core.fold_heartbeats(&mut s, now);
            assert_eq!(
                s.agents["n1"].last_seen_ms, want,
                "record {record}, heartbeat {beat}, now {now}"
            );
        }
        // Folding at every 100 ms and a round after each: lost at the first round past the
        // last heartbeat + the timeout, never before.
        let last_beat = 50_000;
        let mut s = State::default();
        register(&mut s, &mut Tx::new(40_000), "n1");
        core.heartbeats
            .lock()
            .expect("heartbeats")
            .insert("n1".into(), last_beat);
        let mut now = 40_000;
        while !s.agents["n1"].lost {
            now += 100;
            core.fold_heartbeats(&mut s, now);
            scheduler::reconcile(&mut s, &mut Tx::new(now), &cfg);
            assert!(now < 70_000, "never declared lost");
        }
        assert_eq!(
            now,
            last_beat + 10_000 + 100,
            "lost exactly past the timeout"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_core_is_deposed_by_a_successors_term_and_writes_nothing_more() {
        let store = Arc::new(MemStore::new());
        let fence = elect(&store, "a");
        let shared: Arc<dyn Store> = store.clone();
        let cfg = SchedulerConfig::new(Duration::from_secs(3600));
        let old = Core::open_fenced(shared.clone(), cfg.clone(), fence).expect("open");
        old.mutate(|s, tx| {
            register(s, tx, "n1");
            Ok::<_, CoreError>(())
        })
        .await
        .expect("the leader writes");
        let (_, index) = old
            .desired_tasks("n1", 0, Duration::ZERO)
            .await
            .expect("leading")
            .expect("registered");

        // A successor writes its term and loads the state: the agent is there, and its index
        // starts past everything the old leader answered.
        let new = Core::open_fenced(shared, cfg, elect(&store, "b")).expect("open");
        assert!(new.read(|s| s.agents.contains_key("n1")));
        let (_, next) = new
            .desired_tasks("n1", index, Duration::from_secs(60))
            .await
            .expect("leading")
            .expect("registered");
        assert!(next > index, "answered at once: {next} > {index}");

        // The old leader's next write is refused by the store: nothing changes anywhere.
        let revision = store.revision();
        let r = old
            .mutate(|s, tx| {
                register(s, tx, "n2");
                Ok::<_, CoreError>(())
            })
            .await;
        assert!(matches!(r, Err(CoreError::Deposed)), "{r:?}");
        assert!(old.is_deposed());
        tokio::time::timeout(Duration::from_secs(5), old.deposed())
            .await
            .expect("deposed resolves");
        assert_eq!(store.revision(), revision, "nothing written");
        assert!(
            !old.read(|s| s.agents.contains_key("n2")),
            "nothing published"
        );
        assert!(matches!(
            old.mutate(|_, _| Ok::<_, CoreError>(())).await,
            Err(CoreError::Deposed)
        ));
        // And it answers no agent: its set could be older than what the agent saw.
        assert!(matches!(
            old.desired_tasks("n1", index, Duration::ZERO).await,
            Err(CoreError::Deposed)
        ));
    }

    #[tokio::test]
    async fn a_fenced_core_answers_no_agent_that_saw_a_newer_leader() {
        let store = Arc::new(MemStore::new());
        let fence = elect(&store, "a");
        let core = Core::open_fenced(
            store.clone(),
            SchedulerConfig::new(Duration::from_secs(3600)),
            fence,
        )
        .expect("open");
        core.mutate(|s, tx| {
            register(s, tx, "n1");
            Ok::<_, CoreError>(())
        })
        .await
        .expect("registered");
        let latest = store.revision();
        assert!(
            core.desired_tasks("n1", latest, Duration::ZERO)
                .await
                .is_ok()
        );
        assert!(matches!(
            core.desired_tasks("n1", latest + 1, Duration::ZERO).await,
            Err(CoreError::Deposed)
        ));
        // Deposing it wakes a parked poll at once.
        let mut parked = std::pin::pin!(core.desired_tasks("n1", latest, Duration::from_secs(60)));
        assert!(futures::poll!(&mut parked).is_pending(), "parked");
        core.depose();
        let r = tokio::time::timeout(Duration::from_secs(5), parked)
            .await
            .expect("woken");
        assert!(matches!(r, Err(CoreError::Deposed)));
    }

    #[test]
    fn versions_no_app_lists_are_dropped_at_load() {
        let store = Arc::new(MemStore::new());
        let mut e = app_entry("/a");
        let kept = e.versions[0].clone();
        e.versions = vec![kept.clone()];
        let mut batch = Batch::default();
        batch.put(
            format!("{}/a", keys::APPS),
            to_json("a", &e).expect("encode"),
        );
        for (app, v) in [("/a", "old"), ("/a", kept.as_str()), ("/gone", "v")] {
            batch.put(keys::version(app, v), to_json("v", &e.app).expect("encode"));
        }
        store.commit(batch).expect("seed");
        let _core = open(&store);
        let left: Vec<String> = stored_keys(&store)
            .into_iter()
            .filter(|k| k.starts_with(keys::VERSIONS))
            .collect();
        assert_eq!(left, vec![keys::version("/a", &kept)]);
    }

    #[tokio::test]
    async fn a_corrupt_stored_version_is_an_error_naming_it_not_a_missing_one() {
        let store = Arc::new(MemStore::new());
        let mut e = app_entry("/a");
        e.versions = vec!["v1".into()];
        let mut batch = Batch::default();
        batch.put(
            format!("{}/a", keys::APPS),
            to_json("a", &e).expect("encode"),
        );
        batch.put(keys::version("/a", "v1"), b"{not json".to_vec());
        store.commit(batch).expect("seed");
        let core = open(&store);
        let err = core.version("/a", "v1").await.expect_err("corrupt");
        assert!(
            err.to_string().contains("versions//a@v1"),
            "names the record: {err}"
        );
        assert!(matches!(core.version("/a", "v2").await, Ok(None)));
    }

    /// A value serde cannot encode.
    struct Unencodable;
    impl serde::Serialize for Unencodable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no encoding"))
        }
    }

    #[test]
    fn a_record_that_cannot_be_encoded_is_an_error_not_empty_bytes() {
        let err = to_json("tasks/t1", &Unencodable).expect_err("refused");
        assert!(
            matches!(&err, CoreError::Encode { key, .. } if key == "tasks/t1"),
            "{err}"
        );
    }

    /// Trimming an app's versions drops them from the store in the same batch: what the app
    /// lists is what is stored, the newest MAX_VERSIONS.
    #[tokio::test]
    async fn an_app_keeps_at_most_max_versions_in_the_store_and_its_list() {
        let store = Arc::new(MemStore::new());
        let core = open(&store);
        for i in 0..60 {
            let app = cairn_marathon::parse_app(
                serde_json::json!({ "id": "/x", "cmd": format!("sleep {i}"), "instances": 0 }),
                None,
            )
            .expect("valid app");
            let version_ms = core.next_version_ms();
            core.mutate(|s, tx| {
                scheduler::apps::install(s, tx, app, version_ms, false, true).expect("installed");
                Ok::<_, Refused>(())
            })
            .await
            .expect("committed");
        }
        let stored = store
            .scan_prefix("versions//x\u{0}".as_bytes())
            .expect("scan");
        assert_eq!(stored.len(), crate::model::MAX_VERSIONS);
        let listed = core.read(|s| s.apps["/x"].versions.clone());
        assert_eq!(listed.len(), crate::model::MAX_VERSIONS);
        let current = core.read(|s| s.apps["/x"].app.version.clone());
        assert_eq!(listed.last(), current.as_ref());
        let stored_versions: Vec<String> = stored
            .iter()
            .map(|(k, _)| {
                let k = String::from_utf8_lossy(k);
                k.rsplit('\u{0}').next().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(stored_versions, listed);
    }

    /// Counts the wake-ups of a future polled by hand.
    struct Wakes(std::sync::atomic::AtomicUsize);
    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(w: &Arc<Self>) {
            w.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A change wakes the polls of the agents whose desired set or record it changed, not every
    /// parked poll (1,000 agents' polls are not all woken by each agent's change).
    #[tokio::test]
    async fn a_change_wakes_the_polls_of_its_own_agents_only() {
        let store = Arc::new(MemStore::new());
        let core = open(&store);
        core.mutate(|s, tx| {
            register(s, tx, "n1");
            register(s, tx, "n2");
            Ok::<_, CoreError>(())
        })
        .await
        .expect("registered");
        let (_, index) = core
            .desired_tasks("n1", 0, Duration::ZERO)
            .await
            .expect("not fenced")
            .expect("registered");
        let wakes = Arc::new(Wakes(Default::default()));
        let waker = futures::task::waker(wakes.clone());
        let mut parked = Box::pin(core.desired_tasks("n1", index, Duration::from_secs(60)));
        assert!(
            parked
                .as_mut()
                .poll(&mut std::task::Context::from_waker(&waker))
                .is_pending()
        );

        core.mutate(|s, tx| {
            register(s, tx, "n2");
            Ok::<_, CoreError>(())
        })
        .await
        .expect("n2 again");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0, "n1's poll sleeps on");

        core.mutate(|s, tx| {
            register(s, tx, "n1");
            Ok::<_, CoreError>(())
        })
        .await
        .expect("n1 again");
        assert!(
            wakes.0.load(Ordering::SeqCst) > 0,
            "n1's own change wakes it"
        );
        let (_, next) = parked.await.expect("not fenced").expect("registered");
        assert!(next > index);
    }

    /// Status reports that arrive while a change is being committed are applied together in the
    /// next one: one commit for all of them, each answered once it is durable.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_reports_waiting_for_the_writer_are_committed_together() {
        let disk = Arc::new(SlowDisk {
            inner: MemStore::new(),
            held: Mutex::new(false),
            released: std::sync::Condvar::new(),
            entered: tokio::sync::Notify::new(),
        });
        let store: Arc<dyn Store> = disk.clone();
        let core = Arc::new(
            Core::open(store, SchedulerConfig::new(Duration::from_secs(3600))).expect("open"),
        );
        let ids: Vec<String> = core
            .mutate(|s, tx| {
                register(s, tx, "n1");
                let app = cairn_marathon::parse_app(
                    serde_json::json!({ "id": "/r", "cmd": "sleep 1000", "instances": 3 }),
                    None,
                )
                .expect("valid app");
                let e = scheduler::next_version(None, app, 1_000, false, None);
                let ids = (0..3)
                    .map(|_| {
                        scheduler::launch(s, tx, &e.app, e.config_version(), "n1", vec![], None)
                    })
                    .collect();
                tx.app("/r");
                s.apps.insert("/r".into(), e);
                Ok::<_, CoreError>(ids)
            })
            .await
            .expect("launched");
        let running = |id: &String| TaskStatusUpdate {
            task_id: id.clone(),
            state: cairn_marathon::TaskState::Running,
            message: String::new(),
            timestamp: 0,
            healthy: None,
        };

        disk.hold(true);
        let entered = disk.entered.notified();
        let first = {
            let (core, u) = (core.clone(), running(&ids[0]));
            tokio::spawn(async move { core.report_status("n1", vec![u]).await })
        };
        answered("the first report reaching the disk", entered).await;
        let revision = disk.revision();
        let later: Vec<_> = ids[1..]
            .iter()
            .map(|id| {
                let (core, u) = (core.clone(), running(id));
                tokio::spawn(async move { core.report_status("n1", vec![u]).await })
            })
            .collect();
        answered("the later reports queueing", async {
            while core.reports.lock().unwrap().len() < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        disk.hold(false);
        answered("the first report", first)
            .await
            .expect("task")
            .expect("applied");
        for r in later {
            answered("a later report", r)
                .await
                .expect("task")
                .expect("applied");
        }
        assert_eq!(
            disk.revision(),
            revision + 2,
            "the first report's commit, then one for both later reports"
        );
        core.read(|s| {
            for id in &ids {
                assert_eq!(s.tasks[id].state, cairn_marathon::TaskState::Running);
            }
        });
    }

    /// An agent's answer is exactly what serde writes for its desired tasks' specs (the specs
    /// encoded at launch, a task being killed left out).
    #[tokio::test]
    async fn an_agents_answer_is_the_json_of_its_desired_specs() {
        let store = Arc::new(MemStore::new());
        let core = open(&store);
        let ids: Vec<String> = core
            .mutate(|s, tx| {
                register(s, tx, "n1");
                let app = cairn_marathon::parse_app(
                    serde_json::json!({ "id": "/r", "cmd": "sleep 1000", "instances": 3,
                                        "env": {"A": "1"}, "labels": {"L": "x"} }),
                    None,
                )
                .expect("valid app");
                let e = scheduler::next_version(None, app, 1_000, false, None);
                let ids: Vec<String> = (0..3)
                    .map(|_| {
                        scheduler::launch(s, tx, &e.app, e.config_version(), "n1", vec![], None)
                    })
                    .collect();
                tx.app("/r");
                s.apps.insert("/r".into(), e);
                let running = TaskStatusUpdate {
                    task_id: ids[0].clone(),
                    state: cairn_marathon::TaskState::Running,
                    message: String::new(),
                    timestamp: 0,
                    healthy: None,
                };
                scheduler::apply_status(s, tx, "n1", &running);
                scheduler::kill_task(s, tx, &ids[0]);
                Ok::<_, CoreError>(ids)
            })
            .await
            .expect("launched");
        let (set, _) = core
            .desired_tasks("n1", 0, Duration::ZERO)
            .await
            .expect("not fenced")
            .expect("registered");
        let want = core.read(|s| {
            let mut specs: Vec<cairn_marathon::TaskSpec> =
                ids[1..].iter().map(|id| s.tasks[id].spec.clone()).collect();
            specs.sort_by(|a, b| a.id.cmp(&b.id));
            DesiredTasks { tasks: specs }
        });
        assert_eq!(set.decode().expect("JSON"), want);
        assert_eq!(set.len(), 2);
        assert_eq!(set.to_json(), serde_json::to_vec(&want).expect("encoded"));
    }
}
