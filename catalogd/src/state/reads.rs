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
        self.entries_of(&Selection::Service(name.to_string()))
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

/// Which instances a service read is about.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Instances of the service (`/v1/catalog/service`, `/v1/health/service`).
    Service(String),
    /// Instances that reach the service through the mesh: its connect proxies, its native
    /// instances, and terminating gateways linked to it (`.../connect/:service`).
    Connect(String),
    /// Ingress gateways that route to the service (`/v1/health/ingress/:service`).
    Ingress(String),
}

impl Selection {
    /// The blocking-query index a reader of this selection compares.
    pub fn read_index(&self, st: &State) -> u64 {
        match self {
            Selection::Service(name) => st.service_read_index(name),
            _ => st
                .catalog_index()
                .max(st.table_index(super::Table::ConfigEntries)),
        }
    }
}

impl State {
    /// The instances a selection names, in (node, id) order.
    pub fn select(&self, sel: &Selection) -> Vec<(&Node, &NodeService)> {
        match sel {
            Selection::Service(name) => self.service_instances(name),
            Selection::Connect(name) => {
                let gateways = self.linked_gateways(name, "terminating-gateway");
                let mut out: Vec<(&Node, &NodeService)> = self
                    .services
                    .iter()
                    .filter(|(_, s)| {
                        (s.kind == "connect-proxy" && s.proxy.destination_service_name == *name)
                            || (s.connect.native && s.service == *name)
                    })
                    .filter_map(|(k, s)| Some((self.nodes.get(&k.0)?, s)))
                    .collect();
                for gw in gateways {
                    out.extend(self.service_instances(&gw));
                }
                out
            }
            Selection::Ingress(name) => self
                .linked_gateways(name, "ingress-gateway")
                .into_iter()
                .flat_map(|gw| self.service_instances(&gw))
                .collect(),
        }
    }

    /// Names of the gateways of `kind` whose config entry routes to `service` (by name, or by
    /// the ingress wildcard `*`).
    pub fn linked_gateways(&self, service: &str, kind: &str) -> Vec<String> {
        let prefix = format!("{kind}/");
        self.docs_with_prefix(super::Table::ConfigEntries, &prefix)
            .filter(|(_, d)| {
                let listed = |s: &serde_json::Value| {
                    let n = s["Name"].as_str().unwrap_or_default();
                    n == service || (n == "*" && kind == "ingress-gateway")
                };
                match kind {
                    "ingress-gateway" => d.value["Listeners"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|l| l["Services"].as_array().into_iter().flatten())
                        .any(listed),
                    _ => d.value["Services"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(listed),
                }
            })
            .map(|(k, _)| k[prefix.len()..].to_string())
            .collect()
    }

    /// Consul's `?merge-central-config`: a proxy's or gateway's `Proxy` filled from the
    /// proxy-defaults and service-defaults entries (what it registered wins). Other instances
    /// are left as they are.
    pub fn merge_central_config(&self, svc: &mut NodeService) {
        let sidecar = svc.kind == "connect-proxy";
        let gateway = matches!(
            svc.kind.as_str(),
            "mesh-gateway" | "terminating-gateway" | "ingress-gateway" | "api-gateway"
        );
        if !sidecar && !gateway {
            return;
        }
        let target = if sidecar {
            svc.proxy.destination_service_name.clone()
        } else {
            svc.service.clone()
        };
        let proxy_defaults = self.config_entry("proxy-defaults", "global");
        let service_defaults = self.config_entry("service-defaults", &target);
        let mut defaults = proxy_defaults
            .as_ref()
            .and_then(|e| e["Config"].as_object().cloned())
            .unwrap_or_default();
        if let Some(p) = service_defaults
            .as_ref()
            .and_then(|e| e["Protocol"].as_str())
            .filter(|p| !p.is_empty())
        {
            defaults.insert("protocol".into(), serde_json::json!(p));
        }
        for (k, v) in defaults {
            svc.proxy.config.entry(k).or_insert(v);
        }
        let pick = |key: &str, sub: &str| {
            service_defaults
                .as_ref()
                .and_then(|e| e[key][sub].as_str().filter(|s| !s.is_empty()))
                .or_else(|| {
                    proxy_defaults
                        .as_ref()
                        .and_then(|e| e[key][sub].as_str().filter(|s| !s.is_empty()))
                })
                .map(str::to_string)
        };
        if svc.proxy.mesh_gateway.mode.is_empty()
            && let Some(m) = pick("MeshGateway", "Mode")
        {
            svc.proxy.mesh_gateway.mode = m;
        }
        if svc.proxy.mode.is_empty() {
            let mode = service_defaults
                .as_ref()
                .and_then(|e| e["Mode"].as_str().filter(|s| !s.is_empty()))
                .or_else(|| {
                    proxy_defaults
                        .as_ref()
                        .and_then(|e| e["Mode"].as_str().filter(|s| !s.is_empty()))
                });
            if let Some(m) = mode {
                svc.proxy.mode = m.to_string();
            }
        }
    }
}

impl State {
    /// Health entries (node, service, the checks deciding its health) of a selection.
    pub fn entries_of(&self, sel: &Selection) -> Vec<ServiceEntry> {
        self.select(sel)
            .into_iter()
            .map(|(node, svc)| self.entry_of(node, svc))
            .collect()
    }

    /// The health entry of one instance: its node, itself and the checks deciding its health.
    pub fn entry_of(&self, node: &Node, svc: &NodeService) -> ServiceEntry {
        ServiceEntry {
            node: node.clone(),
            service: svc.clone(),
            checks: self.instance_checks(&node.node, &svc.id),
        }
    }

    /// A node with its node-level checks (those of no service).
    pub fn node_health(&self, node: &Node) -> cairn_wire::NodeHealth {
        cairn_wire::NodeHealth {
            node: node.clone(),
            checks: self
                .node_checks(&node.node)
                .filter(|(_, c)| c.service_id.is_empty())
                .map(|(_, c)| c.clone())
                .collect(),
        }
    }
}
