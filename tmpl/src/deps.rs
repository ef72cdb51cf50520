//! Dependencies: the catalog and KV reads a template makes, each a value that one shared
//! blocking watch keeps current, and how each is shaped for templates (consul-template's field
//! names: an instance is `{Node, Address, ID, Name, Tags, Meta, Port, Status}`).

use std::fmt;

use cairn_client::{CatalogClient, ClientError, QueryMeta, QueryOptions};
use serde_json::{Value, json};

/// One read a template depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    /// Instances of a service (healthy only unless `passing` is false).
    Service {
        name: String,
        tag: Option<String>,
        passing: bool,
    },
    /// Every service name with its tags.
    Services,
    /// One KV key (`key` and `key_or_default`).
    Key(String),
    /// Direct children of a KV prefix.
    Ls(String),
    /// Every key under a KV prefix.
    Tree(String),
    Nodes,
    /// One node and its services; empty name = catalogd's own node.
    Node(String),
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dep::Service { name, tag, passing } => {
                write!(f, "service({name}")?;
                if let Some(t) = tag {
                    write!(f, ", tag={t}")?;
                }
                if !passing {
                    write!(f, ", passing=false")?;
                }
                write!(f, ")")
            }
            Dep::Services => write!(f, "services()"),
            Dep::Key(k) => write!(f, "key({k})"),
            Dep::Ls(p) => write!(f, "ls({p})"),
            Dep::Tree(p) => write!(f, "tree({p})"),
            Dep::Nodes => write!(f, "nodes()"),
            Dep::Node(n) if n.is_empty() => write!(f, "node()"),
            Dep::Node(n) => write!(f, "node({n})"),
        }
    }
}

fn prefix_dir(prefix: &str) -> String {
    let p = prefix.trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

pub(crate) fn node_json(n: &cairn_wire::Node) -> Value {
    json!({"ID": n.id, "Node": n.node, "Address": n.address, "Datacenter": n.datacenter,
           "TaggedAddresses": n.tagged_addresses, "Meta": n.meta})
}

/// `service()`'s value: each instance as consul-template shows it.
pub(crate) fn instances_json<'a>(
    entries: impl Iterator<Item = &'a cairn_wire::ServiceEntry>,
) -> Value {
    Value::Array(
        entries
            .map(|e| {
                json!({
                    "Node": e.node.node,
                    "NodeAddress": e.node.address,
                    "NodeMeta": e.node.meta,
                    "Address": e.address(),
                    "ID": e.service.id,
                    "Name": e.service.service,
                    "Tags": e.service.tags,
                    "Meta": e.service.meta,
                    "Port": e.service.port,
                    "Status": e.status().as_str(),
                })
            })
            .collect(),
    )
}

/// `services()`'s value: names (in order) with their tags.
pub(crate) fn services_json(map: std::collections::BTreeMap<String, Vec<String>>) -> Value {
    Value::Array(
        map.into_iter()
            .map(|(name, tags)| json!({"Name": name, "Tags": tags}))
            .collect(),
    )
}

/// `node(name)`'s value: the node and its services (in ID order, as catalogd lists them).
pub(crate) fn node_services_json<'a>(
    node: &cairn_wire::Node,
    services: impl Iterator<Item = &'a cairn_wire::NodeService>,
) -> Value {
    let services: Vec<Value> = services
        .map(|s| {
            let address = if s.address.is_empty() {
                &node.address
            } else {
                &s.address
            };
            json!({"ID": s.id, "Service": s.service, "Name": s.service, "Tags": s.tags,
                   "Meta": s.meta, "Port": s.port, "Address": address})
        })
        .collect();
    json!({"Node": node_json(node), "Services": services})
}

impl Dep {
    /// Reads the dependency once (blocking with `opts.index`/`opts.wait`). `Ok(None)` means it
    /// does not exist (yet): a missing key, an unknown node.
    pub async fn fetch(
        &self,
        client: &CatalogClient,
        opts: &QueryOptions,
    ) -> Result<(Option<Value>, QueryMeta), ClientError> {
        match self {
            Dep::Service { name, tag, passing } => {
                let opts = QueryOptions {
                    tag: tag.iter().cloned().collect(),
                    passing: *passing,
                    ..opts.clone()
                };
                let (entries, meta) = client.health_service(name, &opts).await?;
                Ok((Some(instances_json(entries.iter())), meta))
            }
            Dep::Services => {
                let (map, meta) = client.catalog_services(opts).await?;
                Ok((Some(services_json(map)), meta))
            }
            Dep::Key(key) => {
                let (pair, meta) = client.kv_get(key, opts).await?;
                Ok((
                    pair.map(|p| {
                        Value::String(String::from_utf8_lossy(&p.value_bytes()).into_owned())
                    }),
                    meta,
                ))
            }
            Dep::Ls(prefix) | Dep::Tree(prefix) => {
                let dir = prefix_dir(prefix);
                let (pairs, meta) = client.kv_list(&dir, opts).await?;
                let recursive = matches!(self, Dep::Tree(_));
                let list: Vec<Value> = pairs
                    .iter()
                    .filter_map(|p| {
                        let rel = p.key.strip_prefix(&dir)?;
                        // ls: direct children only, and no "directory" keys.
                        if rel.is_empty() || rel.ends_with('/') || (!recursive && rel.contains('/'))
                        {
                            return None;
                        }
                        Some(
                            json!({"Key": rel, "Value": String::from_utf8_lossy(&p.value_bytes())}),
                        )
                    })
                    .collect();
                Ok((Some(Value::Array(list)), meta))
            }
            Dep::Nodes => {
                let (nodes, meta) = client.catalog_nodes(opts).await?;
                Ok((
                    Some(Value::Array(nodes.iter().map(node_json).collect())),
                    meta,
                ))
            }
            Dep::Node(name) => {
                let name = if name.is_empty() {
                    client.agent_self().await?.config.node_name
                } else {
                    name.clone()
                };
                let (found, meta) = client.catalog_node(&name, opts).await?;
                Ok((
                    found.map(|n| node_services_json(&n.node, n.services.values())),
                    meta,
                ))
            }
        }
    }

    /// What a template sees while the dependency does not exist.
    pub fn absent_value(&self) -> Value {
        match self {
            Dep::Key(_) | Dep::Node(_) => Value::Null,
            _ => Value::Array(Vec::new()),
        }
    }
}
