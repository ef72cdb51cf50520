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
