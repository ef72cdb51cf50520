//! The whole catalog (`GET /v1/cairn/catalog`, what dnsbridge and lbconf follow): every
//! node with its node checks and every service instance with its checks, as the caller's token
//! may see them, serialized. It grows with the catalog, so building it is bounded and shared.
//!
//! A consumer holding index N may ask for what changed since (`?delta`, a
//! [`cairn_wire::CatalogDelta`]): the [`ChangeLog`] keeps, change by change, which nodes,
//! instances and checks each catalog change touched, for a bounded number of changes; the
//! answer holds the current form of each touched node and instance, or says it is gone. A
//! consumer older than the log reaches (or one from before a restart, a restore or an ACL
//! change, which reset it) gets the whole catalog, marked `Full`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use cairn_wire::{CatalogDelta, InstanceRef, NodeHealth, ServiceEntry};
use serde::Serialize;

use crate::state::{Changes, NodeKey, State};

/// Whole catalogs being built and the last one built (and other answers that walk the whole
/// catalog: Prometheus' targets). Building one costs CPU and memory in proportion to the
/// catalog, so at most [`WholeCatalogCache::BUILDS`] are built at once, and the readers one
/// change wakes share one build: they ask at the same state, with the same token and filter
/// (followers such as dnsbridge and lbconf usually do).
pub struct WholeCatalogCache {
    builds: tokio::sync::Semaphore,
    last: Mutex<Option<Arc<BuiltCatalog>>>,
    /// What recent changes touched, for deltas (the writer records into it).
    pub log: Arc<ChangeLog>,
}

/// What a whole-catalog reader asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The whole catalog (`WholeCatalog`).
    Whole,
    /// What changed since this index (`CatalogDelta`).
    DeltaSince(u64),
}

/// What an answer built from the whole catalog is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The catalog itself, in one of its forms (`/v1/cairn/catalog`).
    Catalog(Form),
    /// Prometheus' scrape targets (`/v1/cairn/prometheus/targets`, [`crate::http`]'s
    /// `prometheus_sd`).
    PrometheusTargets,
}

/// One serialized answer built from the whole catalog and what it was built for.
pub struct BuiltCatalog {
    key: Key,
    /// The catalog index it was built at (its `X-Consul-Index`).
    pub index: u64,
    pub bytes: axum::body::Bytes,
    /// Whether the caller's token hid anything.
    pub hidden: bool,
}

/// What an answer was built for: the state's index, the caller's token (its AccessorID), the
/// rest of the request that shapes it (the filter, options) as text, and what it is.
pub type Key = (u64, String, Option<String>, Kind);

impl WholeCatalogCache {
    /// Whole catalogs built at once.
    const BUILDS: usize = 2;

    /// A cache whose deltas come from `log`.
    pub fn new(log: Arc<ChangeLog>) -> Self {
        WholeCatalogCache {
            builds: tokio::sync::Semaphore::new(Self::BUILDS),
            last: Mutex::new(None),
            log,
        }
    }

    fn cached(&self, key: &Key) -> Option<Arc<BuiltCatalog>> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref().filter(|b| b.key == *key).cloned()
    }

    /// The whole catalog of `st` (or its delta, by `form`) as `caller` sees it, through
    /// `filter`: the last one built when it is the same, else built now.
    pub async fn get_or_build(
        &self,
        st: Arc<State>,
        caller: Arc<crate::acl::Caller>,
        filter: Option<cairn_filter::Filter>,
        form: Form,
    ) -> Result<Arc<BuiltCatalog>, String> {
        // `index` moves with every write: a state with the same one holds the same catalog.
        let key = (
            st.index,
            caller.accessor.clone(),
            filter.as_ref().map(|f| format!("{f:?}")),
            Kind::Catalog(form),
        );
        let log = self.log.clone();
        self.shared(key, move || {
            let filter = filter.as_ref();
            let (bytes, hidden) = match form {
                Form::Whole => build_whole_catalog(&st, &caller, filter),
                Form::DeltaSince(since) => match log.since(since, st.catalog_index()) {
                    Some(changed) => build_delta(&st, &caller, filter, &changed),
                    None => build_full_delta(&st, &caller, filter),
                },
            };
            (st.catalog_index(), bytes, hidden)
        })
        .await
    }

    /// The answer `key` names: the last one built when it is the same, else `build`'s (the
    /// index it answers at, its bytes, whether the caller's token hid anything), run on a
    /// blocking thread (it walks the whole catalog: other clients keep the runtime's workers)
    /// while at most [`WholeCatalogCache::BUILDS`] are built at once.
    pub async fn shared(
        &self,
        key: Key,
        build: impl FnOnce() -> (u64, Vec<u8>, bool) + Send + 'static,
    ) -> Result<Arc<BuiltCatalog>, String> {
        if let Some(b) = self.cached(&key) {
            return Ok(b);
        }
        let _permit = self
            .builds
            .acquire()
            .await
            .map_err(|_| "catalogd is stopping".to_string())?;
        // Built by another reader while this one waited for a permit.
        if let Some(b) = self.cached(&key) {
            return Ok(b);
        }
        let built = tokio::task::spawn_blocking(move || {
            let (index, bytes, hidden) = build();
            BuiltCatalog {
                key,
                index,
                bytes: bytes.into(),
                hidden,
            }
        })
        .await
        .map_err(|e| format!("building the whole catalog failed: {e}"))?;
        let built = Arc::new(built);
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(built.clone());
        Ok(built)
    }
}

/// The whole catalog as `caller` may see it, serialized, and whether anything was hidden.
fn build_whole_catalog(
    st: &State,
    caller: &crate::acl::Caller,
    filter: Option<&cairn_filter::Filter>,
) -> (Vec<u8>, bool) {
    let visible = Visible::new(st, caller, filter);
    let whole = WholeOut {
        nodes: Seq::new(visible.nodes()),
        services: Seq::new(visible.services()),
    };
    let bytes = serde_json::to_vec(&whole).unwrap_or_default();
    (bytes, visible.hidden.get())
}

/// The catalog's nodes and instances as a caller sees them through a filter, made one at a
/// time as they are serialized: the whole catalog never exists as values (at 100,000 instances
/// those took ~450 MB beside a 72 MB answer, and the allocator kept much of it afterwards).
struct Visible<'a> {
    st: &'a State,
    caller: &'a crate::acl::Caller,
    filter: Option<&'a cairn_filter::Filter>,
    /// Whether the caller's token hid anything (known once the items have been taken).
    hidden: Cell<bool>,
}

impl<'a> Visible<'a> {
    fn new(
        st: &'a State,
        caller: &'a crate::acl::Caller,
        filter: Option<&'a cairn_filter::Filter>,
    ) -> Self {
        Visible {
            st,
            caller,
            filter,
            hidden: Cell::new(false),
        }
    }

    fn nodes(&self) -> impl Iterator<Item = NodeHealth> + '_ {
        self.st
            .nodes
            .values()
            .filter(|n| {
                let visible = self.caller.authz.node_read(&n.node);
                self.hidden.set(self.hidden.get() || !visible);
                visible
            })
            .map(|n| self.st.node_health(n))
    }

    fn services(&self) -> impl Iterator<Item = ServiceEntry> + '_ {
        self.st
            .by_service
            .keys()
            .flat_map(|name| self.st.service_entries(name))
            .filter(|e| {
                let visible = self.caller.sees_instance(&e.node.node, &e.service.service);
                self.hidden.set(self.hidden.get() || !visible);
                visible
            })
            .map(|mut e| {
                e.checks.retain(|c| self.caller.sees_check(c));
                e
            })
            .filter(|e| match self.filter {
                Some(f) => f.matches(&serde_json::to_value(e).unwrap_or_default()),
                None => true,
            })
    }
}

/// An iterator serialized as a JSON array, its items taken as they are written. Serializing
/// takes the iterator: a second time writes an empty array.
pub(crate) struct Seq<I>(RefCell<Option<I>>);

impl<I> Seq<I> {
    pub(crate) fn new(items: I) -> Self {
        Seq(RefCell::new(Some(items)))
    }
}

impl<I> Serialize for Seq<I>
where
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let items = self.0.borrow_mut().take();
        serializer.collect_seq(items.into_iter().flatten())
    }
}

/// [`cairn_wire::WholeCatalog`]'s fields, written from iterators.
#[derive(Serialize)]
#[serde(
    rename_all = "PascalCase",
    bound = "Seq<N>: Serialize, Seq<S>: Serialize"
)]
struct WholeOut<N, S> {
    nodes: Seq<N>,
    services: Seq<S>,
}

/// A [`CatalogDelta`] marked `Full`, written from iterators.
#[derive(Serialize)]
#[serde(
    rename_all = "PascalCase",
    bound = "Seq<N>: Serialize, Seq<S>: Serialize"
)]
struct FullDeltaOut<N, S> {
    index: u64,
    full: bool,
    nodes: Seq<N>,
    services: Seq<S>,
    removed_nodes: [String; 0],
    removed_services: [InstanceRef; 0],
}

/// Changes kept for deltas, and the keys they may hold in all: past either, the oldest go (a
/// consumer that far behind gets the whole catalog).
const LOG_CHANGES: usize = 10_000;
const LOG_KEYS: usize = 500_000;

/// Which nodes, instances and checks each recent catalog change touched.
pub struct ChangeLog {
    inner: Mutex<LogInner>,
}

struct LogInner {
    /// In index order.
    changes: VecDeque<Touched>,
    /// A delta can start from this index or later: every change after it is in `changes`.
    floor: u64,
    keys: usize,
}

/// What one catalog change touched.
#[derive(Default)]
struct Touched {
    index: u64,
    nodes: Vec<String>,
    services: Vec<NodeKey>,
    checks: Vec<NodeKey>,
}

/// What the changes since an index touched, together.
#[derive(Default, Debug)]
pub struct Changed {
    pub nodes: BTreeSet<String>,
    pub services: BTreeSet<NodeKey>,
    pub checks: BTreeSet<NodeKey>,
}

impl ChangeLog {
    /// An empty log for a catalog at `index`: deltas from `index` on.
    pub fn new(index: u64) -> ChangeLog {
        ChangeLog {
            inner: Mutex::new(LogInner {
                changes: VecDeque::new(),
                floor: index,
                keys: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        // The log holds no invariant a panic elsewhere could break half-way.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a batch's changes, which bring the catalog to `index`; the writer calls it before
    /// the new state is visible, so a reader of that state finds its change here.
    pub fn record(&self, index: u64, changes: &Changes) {
        let acl = changes.docs.iter().any(|(table, _)| table.is_acl());
        let mut log = self.lock();
        if changes.replaced || acl {
            // A whole new state, or new rights (what each token sees changed): no delta across
            // it, not even for a consumer at this very index (its catalog predates the change).
            log.changes.clear();
            log.keys = 0;
            log.floor = index + 1;
            return;
        }
        if changes.nodes.is_empty() && changes.services.is_empty() && changes.checks.is_empty() {
            return;
        }
        let touched = Touched {
            index,
            nodes: changes.nodes.iter().cloned().collect(),
            services: changes.services.iter().cloned().collect(),
            checks: changes.checks.iter().cloned().collect(),
        };
        log.keys += touched.nodes.len() + touched.services.len() + touched.checks.len();
        log.changes.push_back(touched);
        while log.changes.len() > LOG_CHANGES || log.keys > LOG_KEYS {
            let Some(old) = log.changes.pop_front() else {
                break;
            };
            log.keys -= old.nodes.len() + old.services.len() + old.checks.len();
            log.floor = old.index;
        }
    }

    /// What changed after `since` up to `upto`; `None` when the log does not reach back to
    /// `since` (or `since` is ahead of `upto`: a consumer of another catalog).
    pub fn since(&self, since: u64, upto: u64) -> Option<Changed> {
        let log = self.lock();
        if since < log.floor || since > upto {
            return None;
        }
        // Past a reset at `upto` (floor = upto + 1) nothing is answered as a delta: `since`
        // would have to be ahead of the catalog.
        let mut out = Changed::default();
        for t in log
            .changes
            .iter()
            .filter(|t| t.index > since && t.index <= upto)
        {
            out.nodes.extend(t.nodes.iter().cloned());
            out.services.extend(t.services.iter().cloned());
            out.checks.extend(t.checks.iter().cloned());
        }
        Some(out)
    }
}

/// The delta of `changed` against `st` as `caller` sees it through `filter`, serialized, and
/// whether anything was hidden. A node or instance the caller may not see (or the filter
/// leaves out) is listed as removed: the consumer never held it, or holds it no longer.
fn build_delta(
    st: &State,
    caller: &crate::acl::Caller,
    filter: Option<&cairn_filter::Filter>,
    changed: &Changed,
) -> (Vec<u8>, bool) {
    let mut hidden = false;
    let mut nodes: BTreeSet<&str> = changed.nodes.iter().map(String::as_str).collect();
    let mut instances: BTreeSet<NodeKey> = changed.services.clone();
    for key in &changed.checks {
        match st.checks.get(key) {
            Some(c) if !c.service_id.is_empty() => {
                instances.insert((key.0.clone(), c.service_id.clone()));
            }
            // A node check, or a check that is gone (whose instance is not known any more):
            // the node and every instance on it, whose health it may have decided.
            _ => {
                nodes.insert(key.0.as_str());
            }
        }
    }
    for node in &nodes {
        instances.extend(st.node_services(node).map(|(k, _)| k.clone()));
    }
    let mut delta = CatalogDelta {
        index: st.catalog_index(),
        ..Default::default()
    };
    for name in nodes {
        match st.nodes.get(name) {
            Some(n) if caller.authz.node_read(name) => delta.nodes.push(st.node_health(n)),
            found => {
                hidden |= found.is_some();
                delta.removed_nodes.push(name.to_string());
            }
        }
    }
    for key in instances {
        let entry = st
            .services
            .get(&key)
            .and_then(|svc| Some(st.entry_of(st.nodes.get(&key.0)?, svc)));
        let shown = entry.and_then(|mut e| {
            if !caller.sees_instance(&e.node.node, &e.service.service) {
                hidden = true;
                return None;
            }
            e.checks.retain(|c| caller.sees_check(c));
            let kept = match filter {
                Some(f) => f.matches(&serde_json::to_value(&e).unwrap_or_default()),
                None => true,
            };
            kept.then_some(e)
        });
        match shown {
            Some(e) => delta.services.push(e),
            None => delta.removed_services.push(InstanceRef {
                node: key.0,
                service_id: key.1,
            }),
        }
    }
    (serde_json::to_vec(&delta).unwrap_or_default(), hidden)
}

/// The whole catalog as a [`CatalogDelta`] marked `Full`, serialized.
fn build_full_delta(
    st: &State,
    caller: &crate::acl::Caller,
    filter: Option<&cairn_filter::Filter>,
) -> (Vec<u8>, bool) {
    let visible = Visible::new(st, caller, filter);
    let delta = FullDeltaOut {
        index: st.catalog_index(),
        full: true,
        nodes: Seq::new(visible.nodes()),
        services: Seq::new(visible.services()),
        removed_nodes: [],
        removed_services: [],
    };
    let bytes = serde_json::to_vec(&delta).unwrap_or_default();
    (bytes, visible.hidden.get())
}

#[cfg(test)]
mod tests {
    use cairn_wire::CatalogRegistration;

    use cairn_wire::{CatalogDelta, CatalogDeregistration, WholeCatalog};

    use super::Form;
    use crate::core::Catalog;
    use crate::test_support::config;
    use crate::writer::Command;

    async fn register(c: &Catalog, node: &str) {
        let reg: CatalogRegistration = serde_json::from_value(serde_json::json!({
            "Node": node, "Address": "10.0.0.1",
            "Service": {"ID": "web-1", "Service": "web", "Port": 80},
        }))
        .expect("a registration");
        c.core
            .writer
            .submit(Command::Register(Box::new(reg)))
            .await
            .expect("registered");
    }

    fn nodes(bytes: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("JSON");
        let mut names: Vec<String> = v["Nodes"]
            .as_array()
            .expect("Nodes")
            .iter()
            .filter_map(|n| n["Node"]["Node"].as_str().map(String::from))
            .collect();
        names.sort();
        names
    }

    /// Readers of one state with one token share one build; a write makes the next reader build
    /// again, and sees it; a filter is part of what was built.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_of_one_state_share_one_build_and_a_change_builds_again() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        register(&c, "n1").await;
        let core = &c.core;
        let caller = core
            .acl
            .resolve(&core.current.load(), None)
            .expect("a caller");
        let get = async |filter: Option<&str>| {
            let filter = filter.map(|f| cairn_filter::Filter::parse(f).expect("filter"));
            core.whole_catalog
                .get_or_build(
                    core.current.load_full(),
                    caller.clone(),
                    filter,
                    Form::Whole,
                )
                .await
                .expect("built")
        };
        let a = get(None).await;
        let b = get(None).await;
        assert!(
            std::sync::Arc::ptr_eq(&a, &b),
            "the second reader built again"
        );
        assert_eq!(nodes(&a.bytes), ["n1", "server"]);
        let filtered = get(Some("Node.Node == \"n1\"")).await;
        assert!(!std::sync::Arc::ptr_eq(&a, &filtered));
        register(&c, "n2").await;
        let after = get(None).await;
        assert!(!std::sync::Arc::ptr_eq(&a, &after));
        assert!(after.index > a.index);
        assert_eq!(nodes(&after.bytes), ["n1", "n2", "server"]);
    }

    /// The answers written item by item are the JSON of the catalog collected whole (what
    /// consumers decode as `WholeCatalog` and `CatalogDelta`), with and without a filter.
    #[tokio::test]
    async fn streamed_answers_are_the_collected_catalogs_json() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        for (node, svc, status) in [
            ("n1", "web", "passing"),
            ("n1", "db", "critical"),
            ("n2", "web", "warning"),
        ] {
            submit(
                &c,
                registration(serde_json::json!({
                    "Node": node, "Address": "10.0.0.1", "NodeMeta": {"rack": node},
                    "Service": {"ID": format!("{svc}-{node}"), "Service": svc, "Port": 80,
                                "Tags": ["a", "b"], "Meta": {"v": "1"}},
                    "Checks": [
                        {"CheckID": format!("{svc}-alive"), "ServiceID": format!("{svc}-{node}"),
                         "Status": status},
                        {"CheckID": "node-up", "Status": "passing"},
                    ],
                })),
            )
            .await;
        }
        let st = c.core.current.load_full();
        let caller = c.core.acl.resolve(&st, None).expect("a caller");
        for filter in [None, Some("Service.Service == \"web\"")] {
            let filter = filter.map(|f| cairn_filter::Filter::parse(f).expect("filter"));
            let collected = WholeCatalog {
                nodes: st.nodes.values().map(|n| st.node_health(n)).collect(),
                services: st
                    .by_service
                    .keys()
                    .flat_map(|name| st.service_entries(name))
                    .filter(|e| match &filter {
                        Some(f) => f.matches(&serde_json::to_value(e).expect("JSON")),
                        None => true,
                    })
                    .collect(),
            };
            assert!(collected.services.len() >= 2, "{collected:?}");
            let (whole, hidden) = super::build_whole_catalog(&st, &caller, filter.as_ref());
            assert!(!hidden);
            assert_eq!(
                String::from_utf8(whole).expect("UTF-8"),
                serde_json::to_string(&collected).expect("JSON"),
                "{filter:?}"
            );
            let (full, _) = super::build_full_delta(&st, &caller, filter.as_ref());
            let delta = CatalogDelta {
                index: st.catalog_index(),
                full: true,
                nodes: collected.nodes,
                services: collected.services,
                ..CatalogDelta::default()
            };
            assert_eq!(
                String::from_utf8(full).expect("UTF-8"),
                serde_json::to_string(&delta).expect("JSON"),
                "{filter:?}"
            );
        }
    }

    fn touching(node: &str) -> crate::state::Changes {
        let mut ch = crate::state::Changes::default();
        ch.nodes.insert(node.to_string());
        ch
    }

    /// The log answers from where it starts; a restore or an ACL change starts it again past
    /// the catalog's index (a consumer holding that index built its catalog before the change);
    /// it forgets its oldest changes past its bound.
    #[test]
    fn the_change_log_reaches_back_to_its_floor_only() {
        let log = super::ChangeLog::new(10);
        log.record(11, &touching("a"));
        log.record(12, &touching("b"));
        let since_10 = log.since(10, 12).expect("from the start");
        assert_eq!(since_10.nodes.iter().collect::<Vec<_>>(), ["a", "b"]);
        let since_11 = log.since(11, 12).expect("a delta");
        assert_eq!(since_11.nodes.iter().collect::<Vec<_>>(), ["b"]);
        assert!(log.since(9, 12).is_none(), "older than the log");
        assert!(log.since(13, 12).is_none(), "ahead of the catalog");
        // Only the changes up to the state the reader has.
        let upto_11 = log.since(10, 11).expect("a delta");
        assert_eq!(upto_11.nodes.iter().collect::<Vec<_>>(), ["a"]);

        let mut acl = crate::state::Changes::default();
        acl.docs
            .insert((crate::state::Table::AclPolicies, "p".to_string()));
        log.record(12, &acl);
        assert!(
            log.since(12, 12).is_none(),
            "a consumer at 12 predates the ACL change"
        );
        log.record(13, &touching("c"));
        assert!(log.since(12, 13).is_none());
        assert!(log.since(13, 13).is_some());

        let log = super::ChangeLog::new(0);
        for i in 1..=(super::LOG_CHANGES as u64 + 5) {
            log.record(i, &touching("n"));
        }
        assert!(
            log.since(0, 20_000).is_none(),
            "the oldest changes are gone"
        );
        assert!(log.since(super::LOG_CHANGES as u64, 20_000).is_some());
    }

    async fn submit(c: &Catalog, cmd: Command) {
        c.core.writer.submit(cmd).await.expect("applied");
    }

    fn registration(v: serde_json::Value) -> Command {
        Command::Register(Box::new(serde_json::from_value(v).expect("a registration")))
    }

    fn deregistration(v: serde_json::Value) -> Command {
        let d: CatalogDeregistration = serde_json::from_value(v).expect("a deregistration");
        Command::Deregister(d)
    }

    async fn fetch(c: &Catalog, form: Form) -> (u64, Vec<u8>) {
        let core = &c.core;
        let caller = core
            .acl
            .resolve(&core.current.load(), None)
            .expect("a caller");
        let built = core
            .whole_catalog
            .get_or_build(core.current.load_full(), caller, None, form)
            .await
            .expect("built");
        (built.index, built.bytes.to_vec())
    }

    /// A consumer that starts from the whole catalog and applies the delta after each change
    /// holds exactly the whole catalog every time: registrations, a new instance, a check
    /// turning critical (service-level and node-level, which concerns every instance of the
    /// node), a check removed, an instance and a node deregistered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deltas_applied_in_turn_give_the_whole_catalog() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        let (mut index, bytes) = fetch(&c, Form::Whole).await;
        let mut held: WholeCatalog = serde_json::from_slice(&bytes).expect("a catalog");
        let steps = [
            registration(serde_json::json!({"Node": "n1", "Address": "10.0.0.1",
                "Service": {"ID": "web-1", "Service": "web", "Port": 80}})),
            registration(serde_json::json!({"Node": "n1", "Address": "10.0.0.1",
                "Service": {"ID": "db-1", "Service": "db", "Port": 5432},
                "Check": {"CheckID": "db-alive", "Name": "db", "ServiceID": "db-1",
                          "Status": "passing"}})),
            registration(serde_json::json!({"Node": "n2", "Address": "10.0.0.2",
                "Service": {"ID": "web-2", "Service": "web", "Port": 80}})),
            registration(serde_json::json!({"Node": "n1", "Address": "10.0.0.1",
                "Check": {"CheckID": "db-alive", "Name": "db", "ServiceID": "db-1",
                          "Status": "critical"}})),
            registration(serde_json::json!({"Node": "n1", "Address": "10.0.0.1",
                "Check": {"CheckID": "disk", "Name": "disk", "Status": "warning"}})),
            deregistration(serde_json::json!({"Node": "n1", "CheckID": "db-alive"})),
            deregistration(serde_json::json!({"Node": "n1", "ServiceID": "web-1"})),
            registration(serde_json::json!({"Node": "n2", "Address": "10.0.0.22",
                "Service": {"ID": "web-2", "Service": "web", "Port": 8080}})),
            deregistration(serde_json::json!({"Node": "n1"})),
        ];
        for (i, step) in steps.into_iter().enumerate() {
            submit(&c, step).await;
            let (at, bytes) = fetch(&c, Form::DeltaSince(index)).await;
            let delta: CatalogDelta = serde_json::from_slice(&bytes).expect("a delta");
            assert!(!delta.full, "step {i}: a delta, not the whole catalog");
            assert_eq!(delta.index, at);
            assert!(at > index, "step {i}: the index moves on");
            held.apply(delta);
            let (_, whole) = fetch(&c, Form::Whole).await;
            let whole: WholeCatalog = serde_json::from_slice(&whole).expect("a catalog");
            assert_eq!(held, whole, "step {i}: the consumer's catalog differs");
            index = at;
        }
        assert!(held.services.iter().all(|e| e.node.node != "n1"));
    }

    /// A delta holds only what changed; removals name the instance; an index the log does not
    /// reach back to (or one ahead of the catalog) gets the whole catalog, marked full.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deltas_hold_what_changed_and_too_old_an_index_gets_everything() {
        let c = Catalog::start(config("server")).await.expect("catalog");
        for n in 0..20 {
            submit(
                &c,
                registration(
                    serde_json::json!({"Node": format!("n{n}"), "Address": "10.0.0.1",
                    "Service": {"ID": "web", "Service": "web", "Port": 80}}),
                ),
            )
            .await;
        }
        let (index, _) = fetch(&c, Form::Whole).await;
        submit(
            &c,
            deregistration(serde_json::json!({"Node": "n3", "ServiceID": "web"})),
        )
        .await;
        let (_, bytes) = fetch(&c, Form::DeltaSince(index)).await;
        let delta: CatalogDelta = serde_json::from_slice(&bytes).expect("a delta");
        assert!(
            delta.nodes.is_empty() && delta.services.is_empty(),
            "{delta:?}"
        );
        assert_eq!(
            delta.removed_services,
            [cairn_wire::InstanceRef {
                node: "n3".into(),
                service_id: "web".into()
            }]
        );
        // Index 0 is older than any log: the whole catalog.
        let (_, bytes) = fetch(&c, Form::DeltaSince(0)).await;
        let full: CatalogDelta = serde_json::from_slice(&bytes).expect("a delta");
        assert!(full.full);
        let webs = full.services.iter().filter(|e| e.service.service == "web");
        assert_eq!(webs.count(), 19);
        // An index this catalog never reached: the whole catalog too.
        let (_, bytes) = fetch(&c, Form::DeltaSince(index + 1_000)).await;
        let full: CatalogDelta = serde_json::from_slice(&bytes).expect("a delta");
        assert!(full.full);
    }
}
