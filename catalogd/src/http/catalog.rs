//! `/v1/catalog/*`: registration and the catalog's read views.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use cairn_wire::{CatalogDeregistration, CatalogNodeServices, CatalogRegistration, CatalogService};

use serde_json::{Value, json};

use super::query::Who;
use super::respond::{blocking, filtered_by_acls, json_list, json_plain, json_read};
use super::{HttpError, HttpResult, Read, decode_body};
use crate::core::Core;
use crate::state::{Selection, Table, config_key};
use crate::watch::Topic;
use crate::writer::Command;

pub async fn register(State(core): State<Arc<Core>>, Who(caller): Who, body: Bytes) -> HttpResult {
    let reg: CatalogRegistration = decode_body(&body)?;
    crate::acl::vet_registration(&caller, &core.current.load(), &reg)?;
    core.writer.submit(Command::Register(Box::new(reg))).await?;
    Ok(json_plain(&true))
}

pub async fn deregister(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    let d: CatalogDeregistration = decode_body(&body)?;
    crate::acl::vet_deregistration(&caller, &core.current.load(), &d)?;
    core.writer.submit(Command::Deregister(d)).await?;
    Ok(json_plain(&true))
}

pub async fn services(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let (idx, (map, hidden)) = blocking(&core, &opts, Topic::Services, |st| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut hidden = false;
        for ((node, _), svc) in st.services.iter() {
            let Some(n) = st.nodes.get(node) else {
                continue;
            };
            if !caller.authz.service_read(&svc.service) {
                hidden = true;
                continue;
            }
            if !opts.node_matches(&n.meta) {
                continue;
            }
            if let Some(f) = &opts.filter {
                let row = serde_json::to_value(CatalogService::new(n, svc)).unwrap_or_default();
                if !f.matches(&row) {
                    continue;
                }
            }
            let tags = out.entry(svc.service.clone()).or_default();
            for t in &svc.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        (st.tables.services.max(st.tables.nodes), (out, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_read(idx, &map)))
}

pub async fn service(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    instances(core, Selection::Service(name), read).await
}

/// `GET /v1/catalog/connect/:service`: what reaches the service through the mesh.
pub async fn connect(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    instances(core, Selection::Connect(name), read).await
}

/// Catalog rows of a selection: `tag` (repeatable), `node-meta`, `filter`,
/// `merge-central-config`; a `peer` (catalogd has no peerings) matches nothing.
async fn instances(core: Arc<Core>, sel: Selection, read: Read) -> HttpResult {
    let Read {
        query,
        opts,
        caller,
    } = read;
    let tags: Vec<&str> = query.all("tag").collect();
    let merge = query.present("merge-central-config");
    let peer = query.first("peer").is_some_and(|p| !p.is_empty());
    let topic = match &sel {
        Selection::Service(name) => Topic::Service(name.clone()),
        _ => Topic::Catalog,
    };
    let (idx, (rows, hidden)) = blocking(&core, &opts, topic, |st| {
        let mut hidden = false;
        let rows: Vec<CatalogService> = st
            .select(&sel)
            .into_iter()
            .filter(|(n, s)| {
                let visible = caller.sees_instance(&n.node, &s.service);
                hidden |= !visible;
                visible
            })
            .filter(|(n, s)| {
                !peer
                    && opts.node_matches(&n.meta)
                    && tags.iter().all(|t| s.tags.iter().any(|x| x == t))
            })
            .map(|(n, s)| {
                if merge {
                    let mut s = s.clone();
                    st.merge_central_config(&mut s);
                    CatalogService::new(n, &s)
                } else {
                    CatalogService::new(n, s)
                }
            })
            .collect();
        let mut idx = sel.read_index(st);
        if merge {
            idx = idx.max(st.table_index(Table::ConfigEntries));
        }
        (idx, (rows, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &rows, &opts)))
}

/// `GET /v1/catalog/gateway-services/:gateway`: the services an ingress or terminating
/// gateway's config entry routes to.
pub async fn gateway_services(
    State(core): State<Arc<Core>>,
    Path(gateway): Path<String>,
    read: Read,
) -> HttpResult {
    if gateway.is_empty() {
        return Err(HttpError::bad_request("Missing gateway name"));
    }
    let Read { opts, caller, .. } = read;
    caller.require(
        caller.authz.service_read(&gateway),
        "service",
        "read",
        Some(&gateway),
    )?;
    let (idx, rows) = blocking(&core, &opts, Topic::Table(Table::ConfigEntries), |st| {
        (
            st.table_index(Table::ConfigEntries),
            gateway_rows(st, &gateway),
        )
    })
    .await;
    Ok(json_list(idx, &rows, &opts))
}

fn gateway_rows(st: &crate::state::State, gateway: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let has_instances = |svc: &str| !st.service_instances(svc).is_empty();
    let service_kind = |svc: &str| has_instances(svc).then_some("service");
    if let Some(d) = st.doc(
        Table::ConfigEntries,
        &config_key("ingress-gateway", gateway),
    ) {
        for l in d.value["Listeners"].as_array().into_iter().flatten() {
            for s in l["Services"].as_array().into_iter().flatten() {
                let name = s["Name"].as_str().unwrap_or_default();
                let names: Vec<(String, bool)> = if name == "*" {
                    // The wildcard stands for every service reachable through the mesh.
                    st.by_service
                        .keys()
                        .filter(|n| {
                            *n != "consul"
                                && !st.select(&Selection::Connect((*n).clone())).is_empty()
                        })
                        .map(|n| (n.clone(), true))
                        .collect()
                } else {
                    vec![(name.to_string(), false)]
                };
                for (svc, wildcard) in names {
                    let mut row = json!({
                        "Gateway": {"Name": gateway},
                        "Service": {"Name": svc},
                        "GatewayKind": "ingress-gateway",
                        "Port": l["Port"],
                        "Protocol": l["Protocol"],
                    });
                    if let Some(hosts) = s["Hosts"].as_array().filter(|h| !h.is_empty()) {
                        row["Hosts"] = json!(hosts);
                    }
                    if wildcard {
                        row["FromWildcard"] = json!(true);
                    }
                    if let Some(k) = service_kind(&svc) {
                        row["ServiceKind"] = json!(k);
                    }
                    row["CreateIndex"] = json!(d.create_index);
                    row["ModifyIndex"] = json!(d.modify_index);
                    rows.push(row);
                }
            }
        }
    }
    if let Some(d) = st.doc(
        Table::ConfigEntries,
        &config_key("terminating-gateway", gateway),
    ) {
        for s in d.value["Services"].as_array().into_iter().flatten() {
            let svc = s["Name"].as_str().unwrap_or_default();
            let mut row = json!({
                "Gateway": {"Name": gateway},
                "Service": {"Name": svc},
                "GatewayKind": "terminating-gateway",
            });
            for k in ["CAFile", "CertFile", "KeyFile", "SNI"] {
                if let Some(v) = s[k].as_str().filter(|v| !v.is_empty()) {
                    row[k] = json!(v);
                }
            }
            if let Some(k) = service_kind(svc) {
                row["ServiceKind"] = json!(k);
            }
            row["CreateIndex"] = json!(d.create_index);
            row["ModifyIndex"] = json!(d.modify_index);
            rows.push(row);
        }
    }
    rows.sort_by(|a, b| {
        (a["Service"]["Name"].as_str(), a["Port"].as_i64())
            .cmp(&(b["Service"]["Name"].as_str(), b["Port"].as_i64()))
    });
    rows
}

pub async fn nodes(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let (idx, (nodes, hidden)) = blocking(&core, &opts, Topic::Nodes, |st| {
        let mut hidden = false;
        let nodes: Vec<_> = st
            .nodes
            .values()
            .filter(|n| {
                let visible = caller.authz.node_read(&n.node);
                hidden |= !visible;
                visible
            })
            .filter(|n| opts.node_matches(&n.meta))
            .cloned()
            .collect();
        (st.tables.nodes, (nodes, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &nodes, &opts)))
}

pub async fn node(
    State(core): State<Arc<Core>>,
    Path(node): Path<String>,
    read: Read,
) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let (idx, found) = blocking(&core, &opts, Topic::Node(node.clone()), |st| {
        let found = st
            .nodes
            .get(&node)
            .filter(|_| caller.authz.node_read(&node))
            .map(|n| CatalogNodeServices {
                node: n.clone(),
                services: st
                    .node_services(&node)
                    .filter(|(_, s)| caller.authz.service_read(&s.service))
                    .filter(|(_, s)| match &opts.filter {
                        Some(f) => f.matches(&serde_json::to_value(s).unwrap_or_default()),
                        None => true,
                    })
                    .map(|(k, s)| (k.1.clone(), s.clone()))
                    .collect(),
            });
        (st.node_read_index(&node), found)
    })
    .await;
    Ok(json_read(idx, &found))
}

/// `GET /v1/catalog/node-services/:node`: the node and its services as a list (`filter`
/// applies to the services, `merge-central-config` to proxies and gateways).
pub async fn node_services(
    State(core): State<Arc<Core>>,
    Path(node): Path<String>,
    read: Read,
) -> HttpResult {
    let Read {
        query,
        opts,
        caller,
    } = read;
    let merge = query.present("merge-central-config");
    let (idx, found) = blocking(&core, &opts, Topic::Node(node.clone()), |st| {
        let found = st
            .nodes
            .get(&node)
            .filter(|_| caller.authz.node_read(&node))
            .map(|n| {
                let services: Vec<Value> = st
                    .node_services(&node)
                    .filter(|(_, s)| caller.authz.service_read(&s.service))
                    .map(|(_, s)| {
                        let mut s = s.clone();
                        if merge {
                            st.merge_central_config(&mut s);
                        }
                        serde_json::to_value(s).unwrap_or_default()
                    })
                    .filter(|v| opts.filter.as_ref().is_none_or(|f| f.matches(v)))
                    .collect();
                json!({"Node": n, "Services": services})
            });
        (st.node_read_index(&node), found)
    })
    .await;
    Ok(json_read(idx, &found))
}

pub async fn datacenters(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_read(core.index(), &[&core.config.datacenter]))
}
