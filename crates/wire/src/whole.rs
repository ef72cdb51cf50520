//! The `/v1/cairn/catalog` body: the whole catalog in one blocking read, so that whole-catalog
//! consumers (dnsbridge, lbconf, tmpl) hold one watch instead of one per service.

use serde::{Deserialize, Serialize};

use crate::catalog::{HealthCheck, Node, ServiceEntry};
use crate::health::CheckStatus;

/// A node with its node-level checks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeHealth {
    pub node: Node,
    pub checks: Vec<HealthCheck>,
}

/// Every node and every service instance, each instance with its service and node checks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct WholeCatalog {
    pub nodes: Vec<NodeHealth>,
    pub services: Vec<ServiceEntry>,
}

impl WholeCatalog {
    /// Instances of `name`, optionally only those that are not critical.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.services
            .iter()
            .filter(move |e| e.service.service == name)
    }

    /// Status of a node's own checks.
    pub fn node_status(&self, node: &str) -> Option<CheckStatus> {
        self.nodes
            .iter()
            .find(|n| n.node.node == node)
            .map(|n| crate::health::aggregate_status(n.checks.iter().map(|c| c.status)))
    }
}

/// The `/v1/cairn/catalog?delta` body: what changed since the index the consumer holds, or the
/// whole catalog when that index is older than catalogd's change log reaches (`full`).
///
/// Applying one: with `full`, replace everything by `nodes` and `services`; otherwise remove
/// `removed_nodes` and `removed_services`, then put `nodes` and `services` in place of the ones
/// with the same name (nodes) or node and ID (instances). An instance or node the consumer does
/// not hold may be listed as removed (one it may not see, say); that removes nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct CatalogDelta {
    /// The catalog index this answer brings the consumer to (also `X-Consul-Index`).
    pub index: u64,
    /// The whole catalog, not a delta.
    pub full: bool,
    /// Nodes added or changed (with their node checks).
    pub nodes: Vec<NodeHealth>,
    /// Instances added or changed (with their checks).
    pub services: Vec<ServiceEntry>,
    pub removed_nodes: Vec<String>,
    pub removed_services: Vec<InstanceRef>,
}

/// One service instance: its node and service ID.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "PascalCase", default)]
pub struct InstanceRef {
    pub node: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
}

impl WholeCatalog {
    /// Brings this catalog to `delta`'s state (see [`CatalogDelta`]), keeping nodes and
    /// instances in (name) and (node, ID) order as catalogd sends them.
    pub fn apply(&mut self, delta: CatalogDelta) {
        if delta.full {
            self.nodes = delta.nodes;
            self.services = delta.services;
            return;
        }
        let gone_nodes: std::collections::HashSet<&str> =
            delta.removed_nodes.iter().map(String::as_str).collect();
        let gone: std::collections::HashSet<(&str, &str)> = delta
            .removed_services
            .iter()
            .map(|r| (r.node.as_str(), r.service_id.as_str()))
            .collect();
        let put_nodes: std::collections::HashSet<&str> =
            delta.nodes.iter().map(|n| n.node.node.as_str()).collect();
        let put: std::collections::HashSet<(&str, &str)> = delta
            .services
            .iter()
            .map(|e| (e.node.node.as_str(), e.service.id.as_str()))
            .collect();
        self.nodes.retain(|n| {
            let name = n.node.node.as_str();
            !gone_nodes.contains(name) && !put_nodes.contains(name)
        });
        self.services.retain(|e| {
            let key = (e.node.node.as_str(), e.service.id.as_str());
            !gone.contains(&key) && !put.contains(&key)
        });
        self.nodes.extend(delta.nodes);
        self.services.extend(delta.services);
        self.nodes.sort_by(|a, b| a.node.node.cmp(&b.node.node));
        self.services.sort_by(|a, b| {
            (&a.service.service, &a.node.node, &a.service.id).cmp(&(
                &b.service.service,
                &b.node.node,
                &b.service.id,
            ))
        });
    }
}

/// Where an instance sits in a [`CatalogMirror`]: service name, node, service ID (the order
/// catalogd sends instances in).
type MirrorKey = (String, String, String);

/// A consumer's copy of the whole catalog, kept current by applying deltas. Instances are held
/// by (service, node, ID) and nodes by name, with an index of each node's instances, so applying
/// a delta costs in proportion to the delta (times log N), not to the catalog; [`Touched`] says
/// which services and nodes it changed, so a consumer can redo only what depends on them.
#[derive(Clone, Debug, Default)]
pub struct CatalogMirror {
    instances: std::collections::BTreeMap<MirrorKey, ServiceEntry>,
    nodes: std::collections::BTreeMap<String, NodeHealth>,
    /// Node → (service name, ID) of its instances.
    on_node: std::collections::HashMap<String, std::collections::BTreeSet<(String, String)>>,
}

/// What one [`CatalogMirror::apply`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Everything was replaced (a whole answer): redo everything.
    pub all: bool,
    /// Names of the services with an instance added, changed or removed.
    pub services: std::collections::BTreeSet<String>,
    /// Nodes added, changed or removed.
    pub nodes: std::collections::BTreeSet<String>,
}

impl CatalogMirror {
    /// Brings the copy to `delta`'s state (see [`CatalogDelta`]) and says what changed.
    pub fn apply(&mut self, delta: CatalogDelta) -> Touched {
        if delta.full {
            *self = CatalogMirror::default();
            for n in delta.nodes {
                self.nodes.insert(n.node.node.clone(), n);
            }
            for e in delta.services {
                self.put(e);
            }
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
            self.nodes.insert(n.node.node.clone(), n);
        }
        for e in delta.services {
            // An instance renamed to another service leaves its old name's list.
            if let Some(old) = self.remove(&e.node.node, &e.service.id) {
                touched.services.insert(old);
            }
            touched.services.insert(e.service.service.clone());
            self.put(e);
        }
        touched
    }

    fn put(&mut self, e: ServiceEntry) {
        let (service, node, id) = (
            e.service.service.clone(),
            e.node.node.clone(),
            e.service.id.clone(),
        );
        self.on_node
            .entry(node.clone())
            .or_default()
            .insert((service.clone(), id.clone()));
        self.instances.insert((service, node, id), e);
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

    /// Every instance, in (service, node, ID) order.
    pub fn instances(&self) -> impl Iterator<Item = &ServiceEntry> {
        self.instances.values()
    }

    /// The instances of service `name`, in (node, ID) order.
    pub fn instances_of<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.instances
            .range((name.to_string(), String::new(), String::new())..)
            .take_while(move |((service, _, _), _)| service == name)
            .map(|(_, e)| e)
    }

    /// The instances on node `name`, in (service, ID) order.
    pub fn instances_on<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.on_node
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(move |(service, id)| {
                self.instances
                    .get(&(service.clone(), name.to_string(), id.clone()))
            })
    }

    /// Every node, in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeHealth> {
        self.nodes.values()
    }

    pub fn node(&self, name: &str) -> Option<&NodeHealth> {
        self.nodes.get(name)
    }

    /// How many instances it holds.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// The copy as a [`WholeCatalog`] (nodes by name, instances by service, node, ID).
    pub fn to_whole(&self) -> WholeCatalog {
        WholeCatalog {
            nodes: self.nodes.values().cloned().collect(),
            services: self.instances.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::NodeService;

    fn entry(node: &str, id: &str, service: &str) -> ServiceEntry {
        ServiceEntry {
            node: Node {
                node: node.into(),
                ..Node::default()
            },
            service: NodeService {
                id: id.into(),
                service: service.into(),
                ..NodeService::default()
            },
            checks: Vec::new(),
        }
    }

    fn node(name: &str) -> NodeHealth {
        NodeHealth {
            node: Node {
                node: name.into(),
                ..Node::default()
            },
            checks: Vec::new(),
        }
    }

    fn ids(m: &CatalogMirror) -> Vec<(String, String, String)> {
        m.instances()
            .map(|e| {
                (
                    e.service.service.clone(),
                    e.node.node.clone(),
                    e.service.id.clone(),
                )
            })
            .collect()
    }

    fn names(v: &[&str]) -> std::collections::BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Every step applied to the mirror and to a WholeCatalog gives the same catalog, and the
    /// mirror names what each step touched.
    #[test]
    fn a_mirror_applies_deltas_as_the_whole_catalog_does_and_says_what_changed() {
        let steps: Vec<(CatalogDelta, Touched)> = vec![
            (
                CatalogDelta {
                    full: true,
                    nodes: vec![node("n1"), node("n2")],
                    services: vec![entry("n1", "web-1", "web"), entry("n2", "web-2", "web")],
                    ..CatalogDelta::default()
                },
                Touched {
                    all: true,
                    ..Touched::default()
                },
            ),
            (
                CatalogDelta {
                    services: vec![entry("n2", "db-1", "db")],
                    ..CatalogDelta::default()
                },
                Touched {
                    services: names(&["db"]),
                    ..Touched::default()
                },
            ),
            (
                // web-2 is re-registered as service "api": both names changed.
                CatalogDelta {
                    services: vec![entry("n2", "web-2", "api")],
                    ..CatalogDelta::default()
                },
                Touched {
                    services: names(&["api", "web"]),
                    ..Touched::default()
                },
            ),
            (
                CatalogDelta {
                    removed_services: vec![InstanceRef {
                        node: "n1".into(),
                        service_id: "web-1".into(),
                    }],
                    ..CatalogDelta::default()
                },
                Touched {
                    services: names(&["web"]),
                    ..Touched::default()
                },
            ),
            (
                // A removed node takes its instances along even when they are not listed.
                CatalogDelta {
                    removed_nodes: vec!["n2".into()],
                    nodes: vec![node("n3")],
                    services: vec![entry("n3", "web-3", "web")],
                    ..CatalogDelta::default()
                },
                Touched {
                    services: names(&["api", "db", "web"]),
                    nodes: names(&["n2", "n3"]),
                    ..Touched::default()
                },
            ),
        ];
        let mut mirror = CatalogMirror::default();
        let mut whole = WholeCatalog::default();
        for (n, (delta, expected)) in steps.into_iter().enumerate() {
            let mut listed = delta.clone();
            if !listed.full {
                // The WholeCatalog form needs the node's instances listed (catalogd does so).
                for gone in &listed.removed_nodes.clone() {
                    for e in whole.services.iter().filter(|e| &e.node.node == gone) {
                        listed.removed_services.push(InstanceRef {
                            node: gone.clone(),
                            service_id: e.service.id.clone(),
                        });
                    }
                }
            }
            whole.apply(listed);
            assert_eq!(mirror.apply(delta), expected, "step {n}");
            assert_eq!(mirror.to_whole(), whole, "step {n}");
        }
        assert_eq!(
            ids(&mirror),
            vec![("web".into(), "n3".into(), "web-3".into())]
        );
        assert_eq!(mirror.instances_of("web").count(), 1);
        assert_eq!(mirror.instances_of("we").count(), 0, "a name, not a prefix");
        assert!(mirror.node("n3").is_some() && mirror.node("n2").is_none());
        assert_eq!(mirror.instances_on("n3").count(), 1);
        assert_eq!(mirror.instances_on("n2").count(), 0);
    }
}
