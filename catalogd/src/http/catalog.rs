//! `/v1/catalog/*`: registration and the catalog's read views.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use cairn_wire::{CatalogDeregistration, CatalogNodeServices, CatalogRegistration, CatalogService};

use super::respond::{blocking, json_list, json_plain, json_read};
use super::{HttpResult, Read, decode_body};
use crate::core::Core;
use crate::watch::Topic;
use crate::writer::Command;

pub async fn register(State(core): State<Arc<Core>>, body: Bytes) -> HttpResult {
    let reg: CatalogRegistration = decode_body(&body)?;
    core.writer.submit(Command::Register(Box::new(reg))).await?;
    Ok(json_plain(&true))
}

pub async fn deregister(State(core): State<Arc<Core>>, body: Bytes) -> HttpResult {
    let d: CatalogDeregistration = decode_body(&body)?;
    core.writer.submit(Command::Deregister(d)).await?;
    Ok(json_plain(&true))
}

pub async fn services(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let opts = read.opts;
    let (idx, map) = blocking(&core, &opts, Topic::Services, |st| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ((node, _), svc) in st.services.iter() {
            let Some(n) = st.nodes.get(node) else {
                continue;
            };
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
        (st.tables.services.max(st.tables.nodes), out)
    })
    .await;
    Ok(json_read(idx, &map))
}

pub async fn service(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    let Read { query, opts } = read;
    let tags: Vec<&str> = query.all("tag").collect();
    let (idx, rows) = blocking(&core, &opts, Topic::Service(name.clone()), |st| {
        let rows: Vec<CatalogService> = st
            .service_instances(&name)
            .into_iter()
            .filter(|(n, s)| {
                opts.node_matches(&n.meta) && tags.iter().all(|t| s.tags.iter().any(|x| x == t))
            })
            .map(|(n, s)| CatalogService::new(n, s))
            .collect();
        (st.service_read_index(&name), rows)
    })
    .await;
    Ok(json_list(idx, &rows, &opts))
}

pub async fn nodes(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let opts = read.opts;
    let (idx, nodes) = blocking(&core, &opts, Topic::Nodes, |st| {
        let nodes: Vec<_> = st
            .nodes
            .values()
            .filter(|n| opts.node_matches(&n.meta))
            .cloned()
            .collect();
        (st.tables.nodes, nodes)
    })
    .await;
    Ok(json_list(idx, &nodes, &opts))
}

pub async fn node(
    State(core): State<Arc<Core>>,
    Path(node): Path<String>,
    read: Read,
) -> HttpResult {
    let opts = read.opts;
    let (idx, found) = blocking(&core, &opts, Topic::Node(node.clone()), |st| {
        let found = st.nodes.get(&node).map(|n| CatalogNodeServices {
            node: n.clone(),
            services: st
                .node_services(&node)
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

pub async fn datacenters(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_read(core.index(), &[&core.config.datacenter]))
}
