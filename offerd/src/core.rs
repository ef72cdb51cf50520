//! The core: offerd's state behind one lock, the store it is made durable in, and the rules for
//! changing it. Every change runs through [`Core::mutate`]: apply the request, let the scheduler
//! react, write everything touched in one store batch, and only then wake the agents whose
//! desired sets changed and publish the events. A request is acknowledged after its batch is on
//! disk, so nothing acknowledged is lost by `kill -9`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_marathon::{App, DesiredTasks, now_millis};
use cairn_store::{Batch, Outcome, Store};
use tokio::sync::watch;

use crate::events::{Event, EventBus};
use crate::model::{Agent, AppEntry, Deployment, State, Task};
use crate::scheduler;

/// Settings the scheduler needs.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// An agent silent this long is lost.
    pub agent_timeout: Duration,
}

/// What a change touched: records to write, agents to wake, events to publish.
#[derive(Debug)]
pub struct Tx {
    pub now_ms: u64,
    apps: BTreeSet<String>,
    tasks: BTreeSet<String>,
    agents: BTreeSet<String>,
    deployments: BTreeSet<String>,
    versions: Vec<App>,
    /// Agents whose desired task set changed.
    pub nodes: BTreeSet<String>,
    pub events: Vec<Event>,
    /// Catalog services (node, service id) to remove: tasks of lost agents, whose own agent
    /// cannot deregister them.
    pub stale_services: Vec<(String, String)>,
}

impl Tx {
    pub fn new(now_ms: u64) -> Tx {
        Tx {
            now_ms,
            apps: BTreeSet::new(),
            tasks: BTreeSet::new(),
            agents: BTreeSet::new(),
            deployments: BTreeSet::new(),
            versions: Vec::new(),
            nodes: BTreeSet::new(),
            events: Vec::new(),
            stale_services: Vec::new(),
        }
    }

    pub fn app(&mut self, id: &str) {
        self.apps.insert(id.to_string());
    }
    pub fn version(&mut self, app: &App) {
        self.versions.push(app.clone());
    }
    /// A task changed; `node`'s desired set may have changed with it.
    pub fn task(&mut self, id: &str, node: &str) {
        self.tasks.insert(id.to_string());
        self.nodes.insert(node.to_string());
    }
    pub fn agent(&mut self, node: &str) {
        self.agents.insert(node.to_string());
    }
    pub fn deployment(&mut self, id: &str) {
        self.deployments.insert(id.to_string());
    }
    pub fn event(&mut self, e: Event) {
        self.events.push(e);
    }

    fn is_empty(&self) -> bool {
        self.apps.is_empty()
            && self.tasks.is_empty()
            && self.agents.is_empty()
            && self.deployments.is_empty()
            && self.versions.is_empty()
    }
}

/// Store keys.
pub(crate) mod keys {
    pub const APPS: &str = "apps/";
    pub const VERSIONS: &str = "versions/";
    pub const TASKS: &str = "tasks/";
    pub const AGENTS: &str = "agents/";
    pub const DEPLOYMENTS: &str = "deployments/";

    pub fn version(app_id: &str, version: &str) -> String {
        format!("{VERSIONS}{app_id}\u{0}{version}")
    }
}

/// Versions kept per app (older ones are dropped from the store).
pub const MAX_VERSIONS: usize = 50;

struct Inner {
    state: State,
    /// Per agent: the store revision at which its desired set last changed.
    desired_index: HashMap<String, u64>,
    /// Index for agents with no recorded change (the revision at load).
    base_index: u64,
    last_version_ms: u64,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("store: {0}")]
    Store(#[from] cairn_store::StoreError),
}

/// offerd's state and its durable home.
pub struct Core {
    inner: Mutex<Inner>,
    store: Arc<dyn Store>,
    pub events: EventBus,
    desired_changed: watch::Sender<u64>,
    /// Where stale catalog services go to be deregistered (see [`Core::stale_services`]).
    stale_tx: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    stale_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>>>,
    pub cfg: CoreConfig,
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
    pub fn open(store: Arc<dyn Store>, cfg: CoreConfig) -> Result<Core, CoreError> {
        let now = now_millis();
        let mut state = State::default();
        for mut e in load_prefix::<AppEntry>(&*store, keys::APPS)? {
            e.app = cairn_marathon::canonical(e.app);
            state.apps.insert(e.app.id.clone(), e);
        }
        for t in load_prefix::<Task>(&*store, keys::TASKS)? {
            state.tasks.insert(t.id.clone(), t);
        }
        for mut a in load_prefix::<Agent>(&*store, keys::AGENTS)? {
            a.last_seen_ms = now;
            state.agents.insert(a.node.clone(), a);
        }
        for d in load_prefix::<Deployment>(&*store, keys::DEPLOYMENTS)? {
            state.deployments.insert(d.id.clone(), d);
        }
        let base_index = store.revision().max(1);
        tracing::info!(
            apps = state.apps.len(),
            tasks = state.tasks.len(),
            agents = state.agents.len(),
            deployments = state.deployments.len(),
            "state loaded"
        );
        let (stale_tx, stale_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Core {
            stale_tx,
            stale_rx: Mutex::new(Some(stale_rx)),
            inner: Mutex::new(Inner {
                state,
                desired_index: HashMap::new(),
                base_index,
                last_version_ms: now,
            }),
            store,
            events: EventBus::default(),
            desired_changed: watch::channel(base_index).0,
            cfg,
            started_ms: now,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock().state)
    }

    /// A fresh, strictly increasing version timestamp (Unix ms).
    pub fn next_version_ms(&self) -> u64 {
        let mut inner = self.lock();
        let ms = now_millis().max(inner.last_version_ms + 1);
        inner.last_version_ms = ms;
        ms
    }

    /// Applies a change. `f` must validate before it modifies anything: an `Err` from it leaves
    /// the state as it was. Then the scheduler reacts, and all of it is committed at once.
    ///
    /// A store that cannot write is fatal: memory would be ahead of the disk, so offerd exits
    /// and its supervisor restarts it from the last durable state (crash-only).
    pub fn mutate<R, E>(
        &self,
        f: impl FnOnce(&mut State, &mut Tx) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut inner = self.lock();
        let mut tx = Tx::new(now_millis());
        // The change is made to a copy (O(1): persistent maps); a refusal drops the copy, so a
        // request failing part-way leaves no trace.
        let mut next = inner.state.clone();
        let r = f(&mut next, &mut tx)?;
        scheduler::reconcile(&mut next, &mut tx, &self.cfg);
        if let Err(e) = self.commit(&mut inner, next, tx) {
            tracing::error!(error = %e, "cannot write the state; exiting so a restart reloads the last durable state");
            std::process::exit(70);
        }
        Ok(r)
    }

    /// Makes `next` durable (the records `tx` touched), then makes it the state and publishes.
    fn commit(&self, inner: &mut Inner, next: State, tx: Tx) -> Result<(), CoreError> {
        if tx.is_empty() {
            inner.state = next;
            for e in tx.events {
                self.events.publish(e);
            }
            return Ok(());
        }
        let state = &next;
        let mut batch = Batch::default();
        let put = |batch: &mut Batch, key: String, v: Option<Vec<u8>>| match v {
            Some(v) => batch.put(key, v),
            None => batch.delete(key),
        };
        for id in &tx.apps {
            put(
                &mut batch,
                format!("{}{id}", keys::APPS),
                state.apps.get(id).map(to_json),
            );
            if !state.apps.contains_key(id) {
                batch.ops.push(cairn_store::Op::DeletePrefix {
                    prefix: format!("{}{id}\u{0}", keys::VERSIONS).into_bytes(),
                });
            }
        }
        for app in &tx.versions {
            let v = app.version.clone().unwrap_or_default();
            batch.put(keys::version(&app.id, &v), to_json(app));
        }
        for id in &tx.tasks {
            put(
                &mut batch,
                format!("{}{id}", keys::TASKS),
                state.tasks.get(id).map(to_json),
            );
        }
        for id in &tx.agents {
            put(
                &mut batch,
                format!("{}{id}", keys::AGENTS),
                state.agents.get(id).map(to_json),
            );
        }
        for id in &tx.deployments {
            put(
                &mut batch,
                format!("{}{id}", keys::DEPLOYMENTS),
                state.deployments.get(id).map(to_json),
            );
        }
        let revision = match self.store.commit(batch)? {
            Outcome::Applied(r) => r,
            // No compares are sent, so this cannot happen; treat it as a store fault.
            Outcome::CompareFailed(_) => {
                return Err(CoreError::Store(cairn_store::StoreError::Corrupt {
                    key: String::new(),
                    reason: "unexpected compare failure",
                }));
            }
        };
        inner.state = next;
        for node in &tx.nodes {
            inner.desired_index.insert(node.clone(), revision);
        }
        if !tx.nodes.is_empty() || !tx.agents.is_empty() {
            self.desired_changed.send_replace(revision);
        }
        for e in tx.events {
            self.events.publish(e);
        }
        for s in tx.stale_services {
            // Nobody listening (no catalog configured) is fine.
            let _ = self.stale_tx.send(s);
        }
        Ok(())
    }

    /// The stream of catalog services to deregister, for the one task that does it.
    pub fn stale_services(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<(String, String)>> {
        self.stale_rx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Drops versions beyond [`MAX_VERSIONS`] from the store.
    pub fn prune_versions(&self, app_id: &str, dropped: &[String]) -> Result<(), CoreError> {
        if dropped.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::default();
        for v in dropped {
            batch.delete(keys::version(app_id, v));
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// One stored version of an app.
    pub fn version(&self, app_id: &str, version: &str) -> Result<Option<App>, CoreError> {
        let Some(entry) = self.store.get(keys::version(app_id, version).as_bytes())? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&entry.value).ok())
    }

    /// The desired set of `node` once its index passes `index` or `wait` runs out, with the
    /// index to block on next. `None` when the node is unknown (it must register). Every call
    /// counts as the agent's heartbeat.
    pub async fn desired_tasks(
        &self,
        node: &str,
        index: u64,
        wait: Duration,
    ) -> Option<(DesiredTasks, u64)> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changed = self.desired_changed.subscribe();
        loop {
            changed.borrow_and_update();
            let now = now_millis();
            {
                let mut inner = self.lock();
                let base = inner.base_index;
                let current = inner.desired_index.get(node).copied().unwrap_or(base);
                let agent = inner.state.agents.get_mut(node)?;
                agent.last_seen_ms = now;
                let lost = agent.lost;
                if !lost
                    && (current > index || index == 0 || tokio::time::Instant::now() >= deadline)
                {
                    let tasks = inner
                        .state
                        .tasks
                        .values()
                        .filter(|t| t.node == node && t.is_desired())
                        .map(|t| t.spec.clone())
                        .collect();
                    return Some((DesiredTasks { tasks }, current));
                }
                if lost {
                    drop(inner);
                    self.agent_returned(node);
                    continue;
                }
            }
            tokio::select! {
                _ = changed.changed() => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// A lost agent is heard from again: it is active, and its desired set (without the tasks
    /// that were replaced meanwhile) tells it what to kill.
    fn agent_returned(&self, node: &str) {
        let r: Result<(), CoreError> = self.mutate(|s, tx| {
            if let Some(a) = s.agents.get_mut(node) {
                a.lost = false;
                a.last_seen_ms = tx.now_ms;
                tx.agent(node);
                tx.nodes.insert(node.to_string());
                tracing::info!(node, "lost agent is back");
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::error!(error = %e, "recording a returning agent failed");
        }
    }

    /// A receiver that sees every committed change to tasks or agents (offers long-poll on it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.desired_changed.subscribe()
    }

    /// Marks an agent as heard from (status posts).
    pub fn touch_agent(&self, node: &str) -> bool {
        let mut inner = self.lock();
        match inner.state.agents.get_mut(node) {
            Some(a) => {
                a.last_seen_ms = now_millis();
                true
            }
            None => false,
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Records are plain data (strings, numbers, maps with string keys): encoding cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_store::MemStore;

    fn open(store: &Arc<MemStore>) -> Core {
        let store: Arc<dyn Store> = store.clone();
        Core::open(
            store,
            CoreConfig {
                agent_timeout: Duration::from_secs(3600),
            },
        )
        .expect("open")
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

    #[test]
    fn a_change_refused_part_way_leaves_state_and_store_as_they_were() {
        let store = Arc::new(MemStore::new());
        let core = open(&store);
        core.mutate(|s, tx| {
            let e = app_entry("/a");
            tx.version(&e.app);
            tx.app("/a");
            s.apps.insert("/a".into(), e);
            Ok::<_, CoreError>(())
        })
        .expect("first change");
        let revision = store.revision();
        let keys = stored_keys(&store);

        // Changes one app, adds another, then refuses (as a later app of a multi-app request
        // locked by a deployment does).
        let r: Result<(), &str> = core.mutate(|s, tx| {
            if let Some(e) = s.apps.get_mut("/a") {
                e.app.instances = 7;
            }
            tx.app("/a");
            let b = app_entry("/b");
            tx.version(&b.app);
            tx.app("/b");
            s.apps.insert("/b".into(), b);
            Err("locked")
        });
        assert_eq!(r, Err("locked"));
        core.read(|s| {
            assert_eq!(s.apps.keys().collect::<Vec<_>>(), vec!["/a"]);
            assert_eq!(s.apps["/a"].app.instances, 0);
        });
        assert_eq!(store.revision(), revision, "nothing committed");
        assert_eq!(stored_keys(&store), keys);
    }
}
