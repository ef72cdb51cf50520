//! What the bridge holds of the catalog. Prepared queries filter on anything an instance has
//! (meta, check IDs, node meta, ...), so while there are any it holds every entry whole (a
//! [`CatalogMirror`]); without them it holds only what answers read (a [`SlimMirror`]: per
//! instance its address, port, lowercase tags and aggregate status; per node its address), a
//! small fraction of the memory at fleet size. `serve` picks the kind and reads the catalog
//! again whole when the need changes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use cairn_wire::{CatalogDelta, CatalogMirror, CheckStatus, ServiceEntry, Touched};

use crate::view::Instance;

/// The catalog as the bridge holds it.
#[derive(Debug)]
pub enum Held {
    Whole(CatalogMirror),
    Slim(SlimMirror),
}

impl Held {
    pub fn whole() -> Held {
        Held::Whole(CatalogMirror::default())
    }

    pub fn slim() -> Held {
        Held::Slim(SlimMirror::default())
    }

    /// Brings it to `delta`'s state and says what changed (as [`CatalogMirror::apply`]).
    pub fn apply(&mut self, delta: CatalogDelta) -> Touched {
        match self {
            Held::Whole(m) => m.apply(delta),
            Held::Slim(m) => m.apply(delta),
        }
    }

    /// The whole entries, when held.
    pub fn entries(&self) -> Option<&CatalogMirror> {
        match self {
            Held::Whole(m) => Some(m),
            Held::Slim(_) => None,
        }
    }

    /// Every service name with an instance, as registered.
    pub fn service_names(&self) -> BTreeSet<&str> {
        match self {
            Held::Whole(m) => m.instances().map(|e| e.service.service.as_str()).collect(),
            Held::Slim(m) => m.instances.keys().map(|(s, _, _)| s.as_str()).collect(),
        }
    }

    /// Whether service `name` (as registered) has an instance.
    pub fn has_service(&self, name: &str) -> bool {
        match self {
            Held::Whole(m) => m.instances_of(name).next().is_some(),
            Held::Slim(m) => m.instances_of(name).next().is_some(),
        }
    }

    /// The answerable instances of service `name` (as registered), in (node, ID) order.
    pub fn answerable_of(&self, name: &str, only_passing: bool) -> Vec<Instance> {
        match self {
            Held::Whole(m) => m
                .instances_of(name)
                .filter_map(|e| answerable(e, only_passing))
                .collect(),
            Held::Slim(m) => m
                .instances_of(name)
                .filter_map(|((_, node, _), i)| {
                    routable(i.status, only_passing).then_some(())?;
                    Some(Instance {
                        node: node.clone(),
                        addr: i.addr?,
                        port: i.port,
                        tags: i.tags.to_vec(),
                    })
                })
                .collect(),
        }
    }

    /// Every node: (name, address).
    pub fn nodes(&self) -> Vec<(&str, &str)> {
        match self {
            Held::Whole(m) => m
                .nodes()
                .map(|n| (n.node.node.as_str(), n.node.address.as_str()))
                .collect(),
            Held::Slim(m) => m
                .nodes
                .iter()
                .map(|(n, a)| (n.as_str(), a.as_str()))
                .collect(),
        }
    }

    /// Node `name`'s address, when held.
    pub fn node_address(&self, name: &str) -> Option<&str> {
        match self {
            Held::Whole(m) => m.node(name).map(|n| n.node.address.as_str()),
            Held::Slim(m) => m.nodes.get(name).map(String::as_str),
        }
    }
}

/// Whether an instance of this aggregate status is answered.
fn routable(status: CheckStatus, only_passing: bool) -> bool {
    match status {
        CheckStatus::Passing => true,
        CheckStatus::Warning => !only_passing,
        CheckStatus::Critical | CheckStatus::Maintenance => false,
    }
}

/// The answerable form of an instance: None when its service or node checks are critical (or
/// warning, with `only_passing`) or its address is not an IP address.
pub fn answerable(entry: &ServiceEntry, only_passing: bool) -> Option<Instance> {
    if !routable(entry.status(), only_passing) {
        return None;
    }
    Some(Instance {
        node: entry.node.node.clone(),
        addr: entry.address().parse().ok()?,
        port: entry.service.port,
        tags: lower_tags(&entry.service.tags).into_vec(),
    })
}

fn lower_tags(tags: &[String]) -> Box<[String]> {
    tags.iter().map(|t| t.to_ascii_lowercase()).collect()
}

/// What answers read of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlimInstance {
    /// The service address, else the node's; None when it is not an IP address.
    addr: Option<IpAddr>,
    port: u16,
    /// Lowercase.
    tags: Box<[String]>,
    /// Over the service's and its node's checks.
    status: CheckStatus,
}

/// Where an instance sits: service name, node, service ID.
type Key = (String, String, String);

/// The catalog reduced to what answers read, kept current by deltas just as a
/// [`CatalogMirror`] is (same keys, same [`Touched`]).
#[derive(Debug, Default)]
pub struct SlimMirror {
    instances: BTreeMap<Key, SlimInstance>,
    /// Node name → address.
    nodes: BTreeMap<String, String>,
    /// Node → (service name, ID) of its instances.
    on_node: HashMap<String, BTreeSet<(String, String)>>,
}

impl SlimMirror {
    pub fn apply(&mut self, delta: CatalogDelta) -> Touched {
        if delta.full {
            // Everything is copied out while the decoded answer is still whole, and only then
            // is it dropped: the copies land apart from it, so the memory it took comes free
            // in one piece and goes back (`view::trim_heap`), where copies made as each entry
            // was dropped would sit scattered among its pages and keep them.
            *self = SlimMirror::default();
            for n in &delta.nodes {
                self.nodes
                    .insert(n.node.node.clone(), n.node.address.clone());
            }
            for e in &delta.services {
                self.put(e);
            }
            drop(delta);
            return Touched {
                all: true,
                ..Touched::default()
            };
        }
        let mut touched = Touched::default();
        for name in delta.removed_nodes {
            self.nodes.remove(&name);
            // Its instances go with it, whether or not the delta lists them too.
            for (service, id) in self.on_node.remove(&name).unwrap_or_default() {
                self.instances.remove(&(service.clone(), name.clone(), id));
                touched.services.insert(service);
            }
            touched.nodes.insert(name);
        }
        for r in delta.removed_services {
            if let Some(service) = self.remove(&r.node, &r.service_id) {
                touched.services.insert(service);
            }
        }
        for n in delta.nodes {
            touched.nodes.insert(n.node.node.clone());
            self.nodes.insert(n.node.node, n.node.address);
        }
        for e in delta.services {
            // An instance renamed to another service leaves its old name's list.
            if let Some(old) = self.remove(&e.node.node, &e.service.id) {
                touched.services.insert(old);
            }
            touched.services.insert(e.service.service.clone());
            self.put(&e);
        }
        touched
    }

    fn put(&mut self, e: &ServiceEntry) {
        let held = SlimInstance {
            addr: e.address().parse().ok(),
            port: e.service.port,
            tags: lower_tags(&e.service.tags),
            status: e.status(),
        };
        let (service, node, id) = (
            e.service.service.clone(),
            e.node.node.clone(),
            e.service.id.clone(),
        );
        self.on_node
            .entry(node.clone())
            .or_default()
            .insert((service.clone(), id.clone()));
        self.instances.insert((service, node, id), held);
    }

    /// Removes the instance `id` on `node`; its service name when it was held.
    fn remove(&mut self, node: &str, id: &str) -> Option<String> {
        let on = self.on_node.get_mut(node)?;
        let (service, _) = on.iter().find(|(_, i)| i == id)?.clone();
        on.remove(&(service.clone(), id.to_string()));
        if on.is_empty() {
            self.on_node.remove(node);
        }
        self.instances
            .remove(&(service.clone(), node.to_string(), id.to_string()));
        Some(service)
    }

    fn instances_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = (&'a Key, &'a SlimInstance)> + 'a {
        self.instances
            .range((name.to_string(), String::new(), String::new())..)
            .take_while(move |((service, _, _), _)| service == name)
    }
}
