//! The in-memory view queries are answered from: every routable instance of every service,
//! every node's address, and the prepared queries with the instances they may pick from. Each
//! change makes a new view that is swapped in whole, so a query never waits on HTTP and never
//! sees half an update; the new view shares everything the change did not touch with the old
//! one (persistent maps), so making it costs in proportion to the change, not to the catalog.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_wire::{ServiceEntry, Touched};

use crate::held::Held;
use imbl::HashMap;

/// One answerable instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Node name as registered (used in SRV targets).
    pub node: String,
    pub addr: IpAddr,
    pub port: u16,
    /// Tags in lowercase.
    pub tags: Vec<String>,
}

/// A snapshot of what DNS answers. The default one stands for "nothing read yet".
#[derive(Debug, Default, Clone)]
pub struct View {
    /// Built from a catalog read: false only before the first one, while nothing under the
    /// domain may be answered (an empty view would deny every name, and resolvers cache that).
    pub loaded: bool,
    /// Lowercase service name → instances that may be answered.
    pub services: HashMap<String, Vec<Instance>>,
    /// Lowercase service name → the names as registered that share it (DNS is
    /// case-insensitive; "Web" and "web" answer together).
    pub(crate) spellings: HashMap<String, BTreeSet<String>>,
    /// Lowercase node name → (name as registered, address).
    pub nodes: HashMap<String, (String, Option<IpAddr>)>,
    /// Catalog index the view was built at (the SOA serial).
    pub index: u64,
    /// Prepared queries (`<query>.query.<domain>`).
    pub queries: Vec<cairn_query::PreparedQuery>,
    /// Service name (as registered) → every instance with its checks, for queries, which apply
    /// their own health rule. Kept only while there are prepared queries.
    pub entries: HashMap<String, Vec<ServiceEntry>>,
    /// Service name → its mesh-capable instances (connect proxies for it, native instances).
    pub connect: HashMap<String, Vec<ServiceEntry>>,
    /// Warning instances are left out.
    pub(crate) only_passing: bool,
    /// This view's number, unique in the process (0: the default view).
    pub(crate) generation: u64,
    /// How the last few updates led to this view, oldest first, so an answer cache made for an
    /// earlier view can drop only what changed since (see [`View::changes_since`]).
    pub(crate) history: Arc<Vec<Arc<Step>>>,
}

/// One [`View::update`]: the view it started from and the lowercase service and node names
/// whose answers it redid. Every other name answers as it did before, except what carries the
/// catalog index (the SOA serial: negative answers, the SOA itself) and prepared queries.
#[derive(Debug)]
pub struct Step {
    pub from: u64,
    pub services: Vec<String>,
    pub nodes: Vec<String>,
}

/// Updates kept in a view's history: a reader further behind starts over.
const HISTORY: usize = 64;

fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Gives the allocator's free memory back to the system. After a whole catalog is read (at
/// 100,000 instances a 70 MB answer decoded into about 500 MB of entries, of which a slim
/// [`Held`] keeps a tenth) glibc keeps the freed pages; trimming returns them.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only releases free memory; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
}

impl View {
    /// Builds the whole view from the catalog.
    pub fn build(
        catalog: &Held,
        queries: Vec<cairn_query::PreparedQuery>,
        index: u64,
        only_passing: bool,
    ) -> View {
        let mut view = View {
            loaded: true,
            index,
            queries,
            only_passing,
            generation: next_generation(),
            ..View::default()
        };
        for name in catalog.service_names() {
            view.spellings
                .entry(name.to_ascii_lowercase())
                .or_default()
                .insert(name.to_string());
        }
        let keys: Vec<String> = view.spellings.keys().cloned().collect();
        for key in keys {
            view.refresh_service(catalog, &key);
        }
        for (name, address) in catalog.nodes() {
            view.nodes.insert(
                name.to_ascii_lowercase(),
                (name.to_string(), address.parse().ok()),
            );
        }
        view.refresh_queries(catalog, None);
        view
    }

    /// This view with the changes `touched` names taken from `catalog` (which holds them
    /// already), at `index`. Costs in proportion to the touched services' instances.
    pub fn update(&self, catalog: &Held, touched: &Touched, index: u64) -> View {
        if touched.all {
            return View::build(catalog, self.queries.clone(), index, self.only_passing);
        }
        let mut view = self.clone();
        view.index = index;
        view.generation = next_generation();
        let mut keys = BTreeSet::new();
        for name in &touched.services {
            let key = name.to_ascii_lowercase();
            let held = catalog.has_service(name);
            let mut spellings = view.spellings.get(&key).cloned().unwrap_or_default();
            if held {
                spellings.insert(name.clone());
            } else {
                spellings.remove(name);
            }
            if spellings.is_empty() {
                view.spellings.remove(&key);
            } else {
                view.spellings.insert(key.clone(), spellings);
            }
            keys.insert(key);
        }
        for key in &keys {
            view.refresh_service(catalog, key);
        }
        let mut node_keys = Vec::with_capacity(touched.nodes.len());
        for name in &touched.nodes {
            let key = name.to_ascii_lowercase();
            node_keys.push(key.clone());
            match catalog.node_address(name) {
                Some(address) => {
                    view.nodes.insert(key, (name.clone(), address.parse().ok()));
                }
                // Another spelling of the same name may hold the key.
                None if view.nodes.get(&key).is_some_and(|(held, _)| held == name) => {
                    view.nodes.remove(&key);
                }
                None => {}
            }
        }
        view.refresh_queries(catalog, Some(&touched.services));
        let kept = self.history.len().min(HISTORY - 1);
        let mut history = Vec::with_capacity(kept + 1);
        history.extend_from_slice(&self.history[self.history.len() - kept..]);
        history.push(Arc::new(Step {
            from: self.generation,
            services: keys.into_iter().collect(),
            nodes: node_keys,
        }));
        view.history = Arc::new(history);
        view
    }

    /// The updates that led from the view numbered `generation` to this one, oldest first; None
    /// when this view does not descend from it through the updates it remembers (a rebuilt
    /// view, or one too far behind), and everything must be taken as changed.
    pub fn changes_since(&self, generation: u64) -> Option<&[Arc<Step>]> {
        let at = self.history.iter().rposition(|s| s.from == generation)?;
        Some(&self.history[at..])
    }

    /// Recomputes the answerable instances of one lowercase service name.
    fn refresh_service(&mut self, catalog: &Held, key: &str) {
        let instances: Vec<Instance> = self
            .spellings
            .get(key)
            .into_iter()
            .flatten()
            .flat_map(|name| catalog.answerable_of(name, self.only_passing))
            .collect();
        if instances.is_empty() {
            self.services.remove(key);
        } else {
            self.services.insert(key.to_string(), instances);
        }
    }

    /// Recomputes what prepared queries pick from: the `touched` services' entries (all of
    /// them when None) and the mesh-capable instances. Nothing is kept without queries.
    fn refresh_queries(&mut self, catalog: &Held, touched: Option<&BTreeSet<String>>) {
        // Held slim only while there are no queries (`serve` reads the catalog again whole
        // before it builds a view with queries).
        let (false, Some(catalog)) = (self.queries.is_empty(), catalog.entries()) else {
            self.entries = HashMap::new();
            self.connect = HashMap::new();
            return;
        };
        let names: Vec<String> = match touched {
            Some(t) if !self.entries.is_empty() => t.iter().cloned().collect(),
            _ => {
                self.entries = HashMap::new();
                let all: BTreeSet<&str> = catalog
                    .instances()
                    .map(|e| e.service.service.as_str())
                    .collect();
                all.into_iter().map(str::to_string).collect()
            }
        };
        for name in names {
            let list: Vec<ServiceEntry> = catalog.instances_of(&name).cloned().collect();
            if list.is_empty() {
                self.entries.remove(&name);
            } else {
                self.entries.insert(name, list);
            }
        }
        // A proxy lists under its destination's name, so one change may move an instance
        // between lists: the mesh-capable instances are few, and gathered again.
        let mut connect: HashMap<String, Vec<ServiceEntry>> = HashMap::new();
        for entry in catalog.instances() {
            let svc = &entry.service;
            let key = if svc.kind == "connect-proxy" {
                &svc.proxy.destination_service_name
            } else if svc.connect.native {
                &svc.service
            } else {
                continue;
            };
            connect.entry(key.clone()).or_default().push(entry.clone());
        }
        self.connect = connect;
    }

    /// Routable instances of a service (lowercase name), optionally only those with `tag`.
    pub fn instances(&self, name: &str, tag: Option<&str>) -> Vec<&Instance> {
        self.services
            .get(name)
            .map(|all| {
                all.iter()
                    .filter(|i| tag.is_none_or(|t| i.tags.iter().any(|x| x == t)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wire::{CatalogDelta, CheckStatus, HealthCheck, Node, NodeService, ServiceEntry};

    fn entry(node: &str, addr: &str, svc_addr: &str, status: CheckStatus) -> ServiceEntry {
        ServiceEntry {
            node: Node {
                node: node.into(),
                address: addr.into(),
                ..Default::default()
            },
            service: NodeService {
                id: format!("web-{node}"),
                service: "Web".into(),
                address: svc_addr.into(),
                port: 80,
                tags: vec!["Prod".into()],
                ..Default::default()
            },
            checks: vec![HealthCheck {
                status,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn health_decides_who_is_answered() {
        let mut cat = Held::whole();
        cat.apply(CatalogDelta {
            full: true,
            services: vec![
                entry("n1", "10.0.0.1", "", CheckStatus::Passing),
                entry("n2", "10.0.0.2", "10.9.9.9", CheckStatus::Warning),
                entry("n3", "10.0.0.3", "", CheckStatus::Critical),
                entry("n4", "not-an-ip", "", CheckStatus::Passing),
            ],
            ..CatalogDelta::default()
        });
        let v = View::build(&cat, Vec::new(), 7, false);
        let addrs: Vec<String> = v
            .instances("web", None)
            .iter()
            .map(|i| i.addr.to_string())
            .collect();
        assert_eq!(addrs, vec!["10.0.0.1", "10.9.9.9"]);
        assert_eq!(v.instances("web", Some("prod")).len(), 2);
        assert!(v.instances("web", Some("canary")).is_empty());
        let strict = View::build(&cat, Vec::new(), 7, true);
        assert_eq!(strict.instances("web", None).len(), 1);
    }

    fn with_node(mut e: ServiceEntry, node_status: CheckStatus) -> ServiceEntry {
        e.checks.push(HealthCheck {
            node: e.node.node.clone(),
            check_id: "serfHealth".into(),
            status: node_status,
            ..Default::default()
        });
        e
    }

    fn named(mut e: ServiceEntry, id: &str, service: &str) -> ServiceEntry {
        e.service.id = id.into();
        e.service.service = service.into();
        e
    }

    fn node(name: &str, addr: &str) -> cairn_wire::NodeHealth {
        cairn_wire::NodeHealth {
            node: Node {
                node: name.into(),
                address: addr.into(),
                ..Default::default()
            },
            checks: Vec::new(),
        }
    }

    /// The parts of a view an answer reads.
    fn answers(v: &View) -> impl PartialEq + std::fmt::Debug {
        let sorted = |m: &HashMap<String, Vec<ServiceEntry>>| {
            let mut all: Vec<(String, Vec<ServiceEntry>)> =
                m.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        (
            v.services.clone(),
            v.nodes.clone(),
            v.index,
            sorted(&v.entries),
            sorted(&v.connect),
        )
    }

    /// Each step's incremental view answers exactly as a view built from scratch would.
    #[test]
    fn an_updated_view_answers_as_a_rebuilt_one() {
        use cairn_wire::InstanceRef;
        let passing = |n: &str, a: &str| entry(n, a, "", CheckStatus::Passing);
        let steps: Vec<CatalogDelta> = vec![
            CatalogDelta {
                full: true,
                nodes: vec![node("n1", "10.0.0.1"), node("n2", "10.0.0.2")],
                services: vec![
                    passing("n1", "10.0.0.1"),
                    passing("n2", "10.0.0.2"),
                    named(passing("n1", "10.0.0.1"), "db-1", "db"),
                ],
                ..CatalogDelta::default()
            },
            // A check turns critical: n2 leaves web.
            CatalogDelta {
                services: vec![entry("n2", "10.0.0.2", "", CheckStatus::Critical)],
                ..CatalogDelta::default()
            },
            // "web" besides "Web": one lowercase name, both answered.
            CatalogDelta {
                nodes: vec![node("n3", "10.0.0.3")],
                services: vec![named(passing("n3", "10.0.0.3"), "w3", "web")],
                ..CatalogDelta::default()
            },
            // The node's own check fails: every instance on it leaves.
            CatalogDelta {
                nodes: vec![node("n1", "10.0.0.1")],
                services: vec![
                    with_node(passing("n1", "10.0.0.1"), CheckStatus::Critical),
                    with_node(
                        named(passing("n1", "10.0.0.1"), "db-1", "db"),
                        CheckStatus::Critical,
                    ),
                ],
                ..CatalogDelta::default()
            },
            // "Web"'s last spelling goes; "web" stays.
            CatalogDelta {
                removed_services: vec![
                    InstanceRef {
                        node: "n1".into(),
                        service_id: "web-n1".into(),
                    },
                    InstanceRef {
                        node: "n2".into(),
                        service_id: "web-n2".into(),
                    },
                ],
                ..CatalogDelta::default()
            },
            // A node goes with its instances; its address is no longer answered.
            CatalogDelta {
                removed_nodes: vec!["n3".into()],
                ..CatalogDelta::default()
            },
        ];
        for queries in [false, true] {
            let queries: Vec<cairn_query::PreparedQuery> = if queries {
                vec![
                    serde_json::from_value(serde_json::json!({
                        "ID": "q1", "Name": "webq", "Service": {"Service": "web"}
                    }))
                    .expect("a query"),
                ]
            } else {
                Vec::new()
            };
            let mut cat = Held::whole();
            let mut view = View::build(&cat, queries.clone(), 0, false);
            // Without queries the bridge holds the catalog slim: it must answer the same.
            let mut slim_cat = Held::slim();
            let mut slim_view = View::build(&slim_cat, Vec::new(), 0, false);
            for (n, delta) in steps.iter().enumerate() {
                let touched = cat.apply(delta.clone());
                view = view.update(&cat, &touched, n as u64 + 1);
                let rebuilt = View::build(&cat, queries.clone(), n as u64 + 1, false);
                assert_eq!(answers(&view), answers(&rebuilt), "step {n}");
                if queries.is_empty() {
                    let touched_slim = slim_cat.apply(delta.clone());
                    assert_eq!(touched_slim, touched, "step {n}");
                    slim_view = slim_view.update(&slim_cat, &touched_slim, n as u64 + 1);
                    assert_eq!(answers(&slim_view), answers(&view), "slim, step {n}");
                }
            }
            assert!(view.instances("web", None).is_empty(), "{view:?}");
            assert!(view.nodes.get("n3").is_none() && view.nodes.get("n1").is_some());
        }
    }
}
