//! The single writer: every change to the catalog goes through here.
//!
//! Commands queue on a bounded channel (a client's write past the bound is refused at once,
//! [`WriteError::Busy`]: answered 503, it changed nothing); the writer thread takes everything queued (group commit), applies
//! each command to a copy-on-write clone of the state (a refused command leaves no trace), writes
//! the dirty keys of the whole group to the store in one durable commit, and only then publishes
//! the new snapshot, wakes the blocking queries it concerns and answers the callers. So a reader
//! never sees a write that is not on disk, and an acknowledged write survives `kill -9`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use cairn_store::{Outcome, Store};
use cairn_wire::{
    AgentCheckRegistration, AgentServiceRegistration, CatalogDeregistration, CatalogRegistration,
    CheckStatus, SessionRequest, TxnKvOp, TxnResult,
};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::persist;
use crate::state::{ApplyError, Changes, KvPut, LockDelays, NodeKey, State, runs_script};
use crate::store_health::StoreHealth;
use crate::timers::Timers;
use crate::watch::Registry;

/// Most commands folded into one commit.
const MAX_GROUP: usize = 4096;
/// Tombstones kept before the oldest are reaped.
const KEEP_TOMBSTONES: usize = 100_000;

/// A change to the catalog. Clone: a replica applies a group again after learning of another
/// replica's batch that got in first.
#[derive(Debug, Clone)]
pub enum Command {
    Register(Box<CatalogRegistration>),
    Deregister(CatalogDeregistration),
    AgentServiceRegister {
        reg: Box<AgentServiceRegistration>,
        replace_checks: bool,
    },
    AgentServiceDeregister(String),
    AgentCheckRegister(Box<AgentCheckRegistration>),
    AgentCheckDeregister(String),
    /// A client's update of a TTL check on catalogd's node (`/v1/agent/check/pass` etc.).
    TtlUpdate {
        check_id: String,
        status: CheckStatus,
        output: String,
    },
    /// A result of a check catalogd runs itself; changes nothing if the check is gone.
    CheckResult {
        check_id: String,
        status: CheckStatus,
        output: String,
    },
    KvPut(KvPut),
    KvDelete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    SessionCreate(SessionRequest),
    SessionDestroy(String),
    Txn(Vec<TxnKvOp>),
    CoordinateUpdate {
        node: String,
        coord: serde_json::Value,
    },
    ConfigApply {
        entry: serde_json::Value,
        cas: Option<u64>,
    },
    ConfigDelete {
        kind: String,
        name: String,
        cas: Option<u64>,
    },
    QueryCreate(Box<cairn_query::PreparedQuery>),
    QueryUpdate(Box<cairn_query::PreparedQuery>),
    QueryDelete(String),
    AutopilotSet {
        config: serde_json::Value,
        cas: Option<u64>,
    },
    /// Stores a server setting unless one is already there (first start).
    SeedSetting {
        key: &'static str,
        value: serde_json::Value,
    },
    /// Stores a server setting, replacing what was there.
    SetSetting {
        key: &'static str,
        value: serde_json::Value,
    },
    /// A change to the ACL tables.
    Acl(Box<crate::state::AclOp>),
    /// A session renewal where replicas share the store: the session's deadline restarts on
    /// every replica (a heartbeat key), since any of them may be the one enforcing it.
    SessionRenew(String),
    /// Replaces the whole state with a restored snapshot's.
    Restore(Box<State>),
    ExpireChecks(Vec<NodeKey>),
    ExpireSessions(Vec<String>),
}

/// What a command answers.
#[derive(Debug)]
pub enum Reply {
    Done,
    Bool(bool),
    Id(String),
    Txn(Vec<TxnResult>),
    Acl(crate::state::AclReply),
}

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("write not persisted: {0}")]
    Store(String),
    #[error("catalog is shutting down")]
    Closed,
    #[error(
        "too many writes pending ({0} queued for the writer, --max-pending-writes); \
         nothing was changed, retry later"
    )]
    Busy(usize),
}

type Request = (Command, oneshot::Sender<Result<Reply, WriteError>>);

/// Cheap handle for submitting commands.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Request>,
}

impl Writer {
    /// Submits a client's command and waits until it is durable (or refused); refused at once
    /// with [`WriteError::Busy`] when the queue is full, so a burst of clients cannot grow it
    /// without bound.
    pub async fn submit(&self, cmd: Command) -> Result<Reply, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx.try_send((cmd, tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => WriteError::Busy(self.tx.max_capacity()),
            mpsc::error::TrySendError::Closed(_) => WriteError::Closed,
        })?;
        rx.await.map_err(|_| WriteError::Closed)?
    }

    /// Submits catalogd's own command (TTL expiries, its checks' results, its server records),
    /// waiting for room in the queue: these must not be lost to a burst of clients.
    pub async fn submit_waiting(&self, cmd: Command) -> Result<Reply, WriteError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((cmd, tx))
            .await
            .map_err(|_| WriteError::Closed)?;
        rx.await.map_err(|_| WriteError::Closed)?
    }
}

/// Identity of the node catalogd is the agent of, and write limits.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    pub node: String,
    pub datacenter: String,
    pub min_session_ttl: Duration,
    pub enable_script_checks: bool,
}

/// Everything the writer thread owns or shares.
pub struct WriterParts {
    pub store: Arc<dyn Store>,
    pub current: Arc<ArcSwap<State>>,
    pub registry: Arc<Registry>,
    pub timers: Arc<Timers>,
    pub metrics: Arc<Metrics>,
    pub store_health: Arc<StoreHealth>,
    pub config: WriterConfig,
    /// Set when other replicas write the same store: where this one follows it from.
    pub replica: Option<replica::Replica>,
    /// What each catalog change touched, for whole-catalog deltas.
    pub catalog_log: Arc<crate::whole_catalog::ChangeLog>,
}

/// Starts the writer thread with room for `max_pending` queued commands; it stops when every
/// [`Writer`] is dropped.
///
/// A panic on the writer thread (a bug in applying a command, or in the store) stops catalogd
/// through [`exit_on_crash`]: without its writer, catalogd would go on answering reads while every
/// write failed, and a restart reloads the last durable state (crash-only).
pub fn spawn(max_pending: usize, parts: WriterParts) -> (Writer, std::thread::JoinHandle<()>) {
    spawn_with(max_pending, parts, exit_on_crash)
}

/// The writer's crash policy: the workspace's crash-only stop (exit 70, for the supervisor to
/// restart catalogd).
fn exit_on_crash() {
    cairn_cli::exit_crash(
        "the catalog writer panicked; stopping catalogd so that a restart reloads the last durable state",
    );
}

fn spawn_with(
    max_pending: usize,
    parts: WriterParts,
    on_crash: impl FnOnce() + Send + 'static,
) -> (Writer, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(max_pending.max(1));
    let handle = std::thread::Builder::new()
        .name("catalog-writer".into())
        .spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(parts, rx)));
            if ran.is_err() {
                on_crash();
            }
        })
        .unwrap_or_else(|e| panic!("cannot start the writer thread: {e}"));
    (Writer { tx }, handle)
}

fn run(mut parts: WriterParts, rx: mpsc::Receiver<Request>) {
    match parts.replica.take() {
        None => run_alone(&parts, rx),
        Some(replica) => replica::run(&parts, rx, replica),
    }
}

/// The writer of a store only this process writes: apply, commit, publish.
fn run_alone(parts: &WriterParts, mut rx: mpsc::Receiver<Request>) {
    let mut delays = LockDelays::default();
    let mut group: Vec<Request> = Vec::new();
    while let Some(first) = rx.blocking_recv() {
        group.push(first);
        gather(&mut rx, &mut group);
        commit_group(parts, &mut delays, &mut group);
    }
}

/// Adds whatever else is queued to `group`, up to [`MAX_GROUP`] commands.
fn gather(rx: &mut mpsc::Receiver<Request>, group: &mut Vec<Request>) {
    while group.len() < MAX_GROUP {
        match rx.try_recv() {
            Ok(r) => group.push(r),
            Err(_) => break,
        }
    }
}

/// A group of commands applied to a copy of the state: the new state, what it touched, and each
/// command's answer (a refused command left no trace).
struct Applied {
    state: State,
    changes: Changes,
    results: Vec<Result<Reply, WriteError>>,
}

fn apply_group(
    parts: &WriterParts,
    delays: &LockDelays,
    now: Instant,
    base: State,
    commands: Vec<Command>,
) -> Applied {
    let mut state = base;
    let mut changes = Changes::default();
    let mut results = Vec::with_capacity(commands.len());
    for cmd in commands {
        let mut next = state.clone();
        let mut ch = Changes::default();
        match apply(&mut next, cmd, parts, delays, now, &mut ch) {
            Ok(r) => {
                state = next;
                changes.merge(ch);
                results.push(Ok(r));
            }
            Err(e) => results.push(Err(WriteError::Apply(e))),
        }
    }
    if state.tombstones.len() > KEEP_TOMBSTONES + KEEP_TOMBSTONES / 10 {
        state.reap_tombstones(KEEP_TOMBSTONES, &mut changes);
    }
    Applied {
        state,
        changes,
        results,
    }
}

/// The store batch that makes the store match an applied group.
fn batch_of(applied: &Applied) -> cairn_store::Batch {
    if applied.changes.replaced {
        let mut all = persist::full_batch(&applied.state);
        all.ops
            .insert(0, cairn_store::Op::DeletePrefix { prefix: Vec::new() });
        all
    } else {
        persist::batch_for(&applied.state, &applied.changes)
    }
}

/// Answers every caller of a group whose commit failed; nothing of it is visible.
fn fail_group(
    parts: &WriterParts,
    senders: Vec<oneshot::Sender<Result<Reply, WriteError>>>,
    why: &str,
) {
    tracing::debug!(error = %why, "commit failed; the batch was not applied");
    parts.store_health.failed(why);
    for reply in senders {
        // A caller that gave up waiting has no one to tell.
        let _ = reply.send(Err(WriteError::Store(why.to_string())));
    }
}

fn commit_group(parts: &WriterParts, delays: &mut LockDelays, group: &mut Vec<Request>) {
    let now = Instant::now();
    let (commands, senders): (Vec<Command>, Vec<_>) = group.drain(..).unzip();
    let base: State = (**parts.current.load()).clone();
    let applied = apply_group(parts, delays, now, base, commands);
    if !applied.changes.is_empty() {
        let batch = batch_of(&applied);
        let ops = batch.ops.len();
        let started = Instant::now();
        let outcome = parts.store.commit(batch);
        parts
            .metrics
            .record_commit(senders.len(), ops, started.elapsed());
        match outcome {
            Ok(Outcome::Applied(_)) => parts.store_health.succeeded(),
            Ok(Outcome::CompareFailed(_)) => {
                return fail_group(parts, senders, "unexpected compare failure");
            }
            Err(e) => return fail_group(parts, senders, &e.to_string()),
        }
    }
    publish(parts, delays, applied, senders);
}

/// After a group is durable (or changed nothing): makes it visible, restarts the TTL timers it
/// touched, answers its callers, then wakes the watchers of what it changed.
fn publish(
    parts: &WriterParts,
    delays: &mut LockDelays,
    applied: Applied,
    senders: Vec<oneshot::Sender<Result<Reply, WriteError>>>,
) {
    publish_with(parts, delays, applied, senders, || {});
}

/// [`publish`], running `visible` once the new state is readable and before anyone is answered.
fn publish_with(
    parts: &WriterParts,
    delays: &mut LockDelays,
    applied: Applied,
    senders: Vec<oneshot::Sender<Result<Reply, WriteError>>>,
    visible: impl FnOnce(),
) {
    let Applied {
        state,
        mut changes,
        results,
    } = applied;
    if !changes.is_empty() {
        // Before the state is visible: a reader of it finds its change in the log.
        parts.catalog_log.record(state.catalog_index(), &changes);
        parts.current.store(Arc::new(state));
    }
    visible();
    let after = Instant::now();
    if changes.replaced {
        parts.timers.arm_all(&parts.current.load(), after);
        delays.clear();
    } else {
        parts.timers.apply(&changes.ttl, after);
    }
    for (key, delay) in changes.lock_delays.drain(..) {
        delays.set(key, after + delay);
    }
    delays.prune(after);
    for (reply, r) in senders.into_iter().zip(results) {
        if r.is_err() {
            parts
                .metrics
                .writes_rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        // A caller that gave up waiting has no one to tell.
        let _ = reply.send(r);
    }
    // Writers first, then watchers: the runtime schedules wake-ups in order, so a write to a key
    // with thousands of watchers is acknowledged without waiting behind all of them.
    if changes.replaced {
        parts.registry.wake_all();
    } else {
        parts.registry.publish(&changes);
    }
}

/// Consul's refusal of a script check on an agent that does not run them.
fn scripts_disabled() -> ApplyError {
    ApplyError::Rpc(
        "Scripts are disabled on this agent from remote calls; to enable, configure \
         'enable_script_checks' to true"
            .into(),
    )
}

fn apply(
    st: &mut State,
    cmd: Command,
    parts: &WriterParts,
    delays: &LockDelays,
    now: Instant,
    ch: &mut Changes,
) -> Result<Reply, ApplyError> {
    let cfg = &parts.config;
    Ok(match cmd {
        Command::Register(reg) => {
            st.register(*reg, &cfg.datacenter, ch)?;
            Reply::Done
        }
        Command::Deregister(d) => {
            st.deregister(d, &cfg.datacenter, ch)?;
            Reply::Done
        }
        Command::AgentServiceRegister {
            reg,
            replace_checks,
        } => {
            let sidecar_checks = reg
                .connect
                .iter()
                .flat_map(|c| &c.sidecar_service)
                .flat_map(|s| s.check.iter().chain(&s.checks));
            if !cfg.enable_script_checks
                && reg
                    .check
                    .iter()
                    .chain(&reg.checks)
                    .chain(sidecar_checks)
                    .any(runs_script)
            {
                return Err(scripts_disabled());
            }
            st.agent_register_service(&cfg.node, *reg, replace_checks, ch)?;
            Reply::Done
        }
        Command::AgentServiceDeregister(id) => {
            st.agent_deregister_service(&cfg.node, &id, ch)?;
            Reply::Done
        }
        Command::AgentCheckRegister(def) => {
            if !cfg.enable_script_checks && runs_script(&def) {
                return Err(scripts_disabled());
            }
            st.agent_register_check(&cfg.node, *def, ch)?;
            Reply::Done
        }
        Command::AgentCheckDeregister(id) => {
            st.agent_deregister_check(&cfg.node, &id, ch)?;
            Reply::Done
        }
        Command::TtlUpdate {
            check_id,
            status,
            output,
        } => {
            st.ttl_update(&cfg.node, &check_id, status, output, ch)?;
            Reply::Done
        }
        Command::CheckResult {
            check_id,
            status,
            output,
        } => {
            st.update_check(&cfg.node, &check_id, status, output, ch)?;
            Reply::Done
        }
        Command::KvPut(put) => Reply::Bool(st.kv_put(put, delays, now, ch)?),
        Command::KvDelete { key, recurse, cas } => {
            Reply::Bool(st.kv_delete(&key, recurse, cas, ch)?)
        }
        Command::SessionCreate(req) => {
            let id = uuid::Uuid::new_v4().to_string();
            Reply::Id(st.session_create(id, req, &cfg.node, cfg.min_session_ttl, ch)?)
        }
        Command::SessionDestroy(id) => {
            st.session_destroy(&id, ch);
            Reply::Bool(true)
        }
        Command::SessionRenew(id) => {
            let Some(session) = st.sessions.get(&id) else {
                return Err(ApplyError::NotFound(format!("Session id '{id}' not found")));
            };
            if session.ttl_ms > 0 {
                let ttl = Duration::from_millis(session.ttl_ms);
                ch.ttl
                    .push(crate::state::TtlChange::ArmSession(id.clone(), ttl));
            }
            Reply::Done
        }
        Command::Txn(ops) => Reply::Txn(st.txn(&ops, delays, now, ch)?),
        Command::CoordinateUpdate { node, coord } => {
            st.coordinate_update(&node, coord, ch)?;
            Reply::Done
        }
        Command::ConfigApply { entry, cas } => Reply::Bool(st.config_apply(entry, cas, ch)?),
        Command::ConfigDelete { kind, name, cas } => {
            Reply::Bool(st.config_delete(&kind, &name, cas, ch))
        }
        Command::QueryCreate(query) => {
            st.query_create(*query, ch)?;
            Reply::Done
        }
        Command::QueryUpdate(query) => {
            st.query_update(*query, ch)?;
            Reply::Done
        }
        Command::QueryDelete(id) => {
            st.query_delete(&id, ch)?;
            Reply::Done
        }
        Command::AutopilotSet { config, cas } => Reply::Bool(st.autopilot_set(config, cas, ch)),
        Command::SeedSetting { key, value } => {
            if st.doc(crate::state::Table::System, key).is_none() {
                st.put_doc(crate::state::Table::System, key, value, ch);
            }
            Reply::Done
        }
        Command::SetSetting { key, value } => {
            st.put_doc(crate::state::Table::System, key, value, ch);
            Reply::Done
        }
        Command::Acl(op) => Reply::Acl(st.acl_apply(*op, ch)?),
        Command::Restore(restored) => {
            let mut restored = *restored;
            // The global index never moves backwards, so writes after the restore get indexes
            // above every one clients saw; the restored records keep theirs.
            restored.index = restored.index.max(st.index);
            *st = restored;
            ch.replaced = true;
            Reply::Done
        }
        Command::ExpireChecks(keys) => {
            for key in keys {
                if parts.timers.check_expired(&key, now) {
                    st.expire_check(&key, ch);
                }
            }
            Reply::Done
        }
        Command::ExpireSessions(ids) => {
            for id in ids {
                if parts.timers.session_expired(&id, now) {
                    tracing::info!(session = %id, "session TTL expired");
                    st.session_destroy(&id, ch);
                }
            }
            Reply::Done
        }
    })
}

pub mod replica;
#[cfg(test)]
mod tests;
