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
