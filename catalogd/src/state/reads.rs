//! Read helpers over one snapshot: instances of a service, a node's services and checks, KV
//! prefixes, and the per-query indexes blocking queries compare.

use cairn_wire::{HealthCheck, Node, NodeService, ServiceEntry};
use imbl::OrdMap;

use super::{NodeKey, State};

/// Entries of `map` whose key starts with `prefix`, in order.
pub fn prefix_range<'a, V: Clone>(
    map: &'a OrdMap<String, V>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
    map.range(prefix.to_string()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// Lower bound of every (node, id) key of `node`.
fn node_lo(node: &str) -> NodeKey {
    (node.to_string(), String::new())
}

impl State {
    /// The services registered on `node`.
    pub fn node_services<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a NodeKey, &'a NodeService)> + 'a {
        self.services
            .range(node_lo(node)..)
            .take_while(move |(k, _)| k.0 == node)
    }

    /// The checks registered on `node` (node-level and service-level).
    pub fn node_checks<'a>(
        &'a self,
        node: &'a str,
    ) -> impl Iterator<Item = (&'a NodeKey, &'a HealthCheck)> + 'a {
        self.checks
            .range(node_lo(node)..)
            .take_while(move |(k, _)| k.0 == node)
    }

    /// Checks that decide an instance's health: its own and its node's.
    pub fn instance_checks(&self, node: &str, service_id: &str) -> Vec<HealthCheck> {
        self.node_checks(node)
            .filter(|(_, c)| c.service_id.is_empty() || c.service_id == service_id)
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Every instance of service `name` with its node, in (node, id) order.
    pub fn service_instances(&self, name: &str) -> Vec<(&Node, &NodeService)> {
        let Some(keys) = self.by_service.get(name) else {
            return Vec::new();
        };
        keys.iter()
            .filter_map(|k| Some((self.nodes.get(&k.0)?, self.services.get(k)?)))
            .collect()
    }

    /// Health entries of service `name` (node, service, checks).
    pub fn service_entries(&self, name: &str) -> Vec<ServiceEntry> {
        self.service_instances(name)
            .into_iter()
            .map(|(node, svc)| ServiceEntry {
                node: node.clone(),
                service: svc.clone(),
                checks: self.instance_checks(&node.node, &svc.id),
            })
            .collect()
    }

    /// Index a reader of service `name` compares: the service's own, else the catalog tables'.
    pub fn service_read_index(&self, name: &str) -> u64 {
        self.service_index
            .get(name)
            .copied()
            .unwrap_or_else(|| self.catalog_index())
            .max(1)
    }

    /// Index a reader of node `name` compares.
    pub fn node_read_index(&self, name: &str) -> u64 {
        self.node_index
            .get(name)
            .copied()
            .unwrap_or(self.tables.nodes)
            .max(1)
    }

    /// Highest index of the node, service and check tables.
    pub fn catalog_index(&self) -> u64 {
        self.tables
            .nodes
            .max(self.tables.services)
            .max(self.tables.checks)
            .max(1)
    }

    /// Index a recursive KV read of `prefix` compares: the newest write or delete under it.
    pub fn kv_prefix_index(&self, prefix: &str) -> u64 {
        let live = prefix_range(&self.kv, prefix)
            .map(|(_, e)| e.modify_index)
            .max()
            .unwrap_or(0);
        let dead = prefix_range(&self.tombstones, prefix)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        let idx = live.max(dead);
        if idx == 0 {
            self.tables.kv.max(1)
        } else {
            idx.max(self.tables.kv_reap_floor)
        }
    }

    /// Index a single-key KV read compares: the key's ModifyIndex, or the KV table's when absent.
    pub fn kv_key_index(&self, key: &str) -> u64 {
        match self.kv.get(key) {
            Some(e) => e.modify_index,
            None => self.tables.kv.max(1),
        }
    }
}
