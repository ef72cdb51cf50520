//! The in-memory view queries are answered from: every routable instance of every service,
//! every node's address, and the prepared queries with the instances they may pick from, rebuilt
//! from the whole catalog (and the query list) on each change and swapped in whole, so a query
//! never waits on HTTP and never sees half an update.

use std::collections::HashMap;
use std::net::IpAddr;

use cairn_wire::{CheckStatus, ServiceEntry, WholeCatalog};

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
#[derive(Debug, Default)]
pub struct View {
    /// Built from a catalog read: false only before the first one, while nothing under the
    /// domain may be answered (an empty view would deny every name, and resolvers cache that).
    pub loaded: bool,
    /// Lowercase service name → instances that may be answered.
    pub services: HashMap<String, Vec<Instance>>,
    /// Lowercase node name → (name as registered, address).
    pub nodes: HashMap<String, (String, Option<IpAddr>)>,
    /// Catalog index the view was built at (the SOA serial).
    pub index: u64,
    /// Prepared queries (`<query>.query.<domain>`).
    pub queries: Vec<cairn_query::PreparedQuery>,
    /// Service name (as registered) → every instance with its checks, for queries, which apply
    /// their own health rule.
    pub entries: HashMap<String, Vec<ServiceEntry>>,
    /// Service name → its mesh-capable instances (connect proxies for it, native instances).
    pub connect: HashMap<String, Vec<ServiceEntry>>,
}

impl View {
    /// Builds the view: instances whose service or node checks are critical are never included;
    /// warning ones only when `only_passing` is off.
    pub fn build(
        catalog: &WholeCatalog,
        queries: Vec<cairn_query::PreparedQuery>,
        index: u64,
        only_passing: bool,
    ) -> View {
        let mut services: HashMap<String, Vec<Instance>> = HashMap::new();
        let mut entries: HashMap<String, Vec<ServiceEntry>> = HashMap::new();
        let mut connect: HashMap<String, Vec<ServiceEntry>> = HashMap::new();
        if !queries.is_empty() {
            for entry in &catalog.services {
                let svc = &entry.service;
                entries
                    .entry(svc.service.clone())
                    .or_default()
                    .push(entry.clone());
                if svc.kind == "connect-proxy" {
                    connect
                        .entry(svc.proxy.destination_service_name.clone())
                        .or_default()
                        .push(entry.clone());
                } else if svc.connect.native {
                    connect
                        .entry(svc.service.clone())
                        .or_default()
                        .push(entry.clone());
                }
            }
        }
        for entry in &catalog.services {
            let routable = match entry.status() {
                CheckStatus::Passing => true,
                CheckStatus::Warning => !only_passing,
                CheckStatus::Critical | CheckStatus::Maintenance => false,
            };
            if !routable {
                continue;
            }
            // Only IP addresses can be answered as A/AAAA.
            let Ok(addr) = entry.address().parse::<IpAddr>() else {
                continue;
            };
            services
                .entry(entry.service.service.to_ascii_lowercase())
                .or_default()
                .push(Instance {
                    node: entry.node.node.clone(),
                    addr,
                    port: entry.service.port,
                    tags: entry
                        .service
                        .tags
                        .iter()
                        .map(|t| t.to_ascii_lowercase())
                        .collect(),
                });
        }
        let nodes = catalog
            .nodes
            .iter()
            .map(|n| {
                (
                    n.node.node.to_ascii_lowercase(),
                    (n.node.node.clone(), n.node.address.parse().ok()),
                )
            })
            .collect();
        View {
            loaded: true,
            services,
            nodes,
            index,
            queries,
            entries,
            connect,
        }
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
    use cairn_wire::{HealthCheck, Node, NodeService, ServiceEntry};

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
        let cat = WholeCatalog {
            nodes: vec![],
            services: vec![
                entry("n1", "10.0.0.1", "", CheckStatus::Passing),
                entry("n2", "10.0.0.2", "10.9.9.9", CheckStatus::Warning),
                entry("n3", "10.0.0.3", "", CheckStatus::Critical),
                entry("n4", "not-an-ip", "", CheckStatus::Passing),
            ],
        };
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
}
