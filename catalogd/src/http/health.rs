//! `/v1/health/*`: instances with their checks, and checks by service, node or state.

use std::sync::Arc;

use axum::extract::{Path, State};
use cairn_wire::{CheckStatus, HealthCheck, ServiceEntry};

use super::respond::{blocking, filtered_by_acls, json_list};
use super::{HttpError, HttpResult, Read};
use crate::core::Core;
use crate::state::Selection;
use crate::watch::Topic;

pub async fn service(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    entries(core, Selection::Service(name), read).await
}

/// `GET /v1/health/connect/:service`.
pub async fn connect(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    entries(core, Selection::Connect(name), read).await
}

/// `GET /v1/health/ingress/:service`: the ingress gateways that route to the service.
pub async fn ingress(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    entries(core, Selection::Ingress(name), read).await
}

/// Health entries of a selection: `passing`, `tag`, `node-meta`, `filter`,
/// `merge-central-config`; a `peer` (catalogd has no peerings) matches nothing, except for
/// ingress, where Consul ignores it.
async fn entries(core: Arc<Core>, sel: Selection, read: Read) -> HttpResult {
    let Read {
        query,
        opts,
        caller,
    } = read;
    let passing = query.present("passing") && query.first("passing") != Some("false");
    let tags: Vec<&str> = query.all("tag").collect();
    let merge = query.present("merge-central-config");
    let peer =
        query.first("peer").is_some_and(|p| !p.is_empty()) && !matches!(sel, Selection::Ingress(_));
    let topic = match &sel {
        Selection::Service(name) => Topic::Service(name.clone()),
        _ => Topic::Catalog,
    };
    let (idx, (entries, hidden)) = blocking(&core, &opts, topic, |st| {
        let mut hidden = false;
        let entries: Vec<ServiceEntry> = st
            .select(&sel)
            .into_iter()
            .filter(|(node, svc)| {
                let visible = caller.sees_instance(&node.node, &svc.service);
                hidden |= !visible;
                visible
            })
            .map(|(node, svc)| {
                let mut service = svc.clone();
                if merge {
                    st.merge_central_config(&mut service);
                }
                let mut checks = st.instance_checks(&node.node, &svc.id);
                checks.retain(|c| caller.sees_check(c));
                ServiceEntry {
                    node: node.clone(),
                    checks,
                    service,
                }
            })
            .filter(|e| {
                !peer
                    && opts.node_matches(&e.node.meta)
                    && tags.iter().all(|t| e.service.tags.iter().any(|x| x == t))
                    && (!passing || e.checks.iter().all(|c| c.status == CheckStatus::Passing))
            })
            .collect();
        let mut idx = sel.read_index(st);
        if merge {
            idx = idx.max(st.table_index(crate::state::Table::ConfigEntries));
        }
        (idx, (entries, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &entries, &opts)))
}

pub async fn checks(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let (idx, (checks, hidden)) = blocking(&core, &opts, Topic::Service(name.clone()), |st| {
        let mut checks: Vec<HealthCheck> = Vec::new();
        let mut hidden = false;
        for (node, svc) in st.service_instances(&name) {
            if !opts.node_matches(&node.meta) {
                continue;
            }
            if !caller.sees_instance(&node.node, &svc.service) {
                hidden = true;
                continue;
            }
            checks.extend(
                st.node_checks(&node.node)
                    .filter(|(_, c)| c.service_id == svc.id)
                    .map(|(_, c)| c.clone()),
            );
        }
        (st.service_read_index(&name), (checks, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &checks, &opts)))
}

pub async fn node(
    State(core): State<Arc<Core>>,
    Path(node): Path<String>,
    read: Read,
) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let (idx, (checks, hidden)) = blocking(&core, &opts, Topic::Node(node.clone()), |st| {
        let all = st.node_checks(&node).count();
        let checks: Vec<HealthCheck> = st
            .node_checks(&node)
            .map(|(_, c)| c)
            .filter(|c| caller.sees_check(c))
            .cloned()
            .collect();
        let hidden = checks.len() != all;
        (st.node_read_index(&node), (checks, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &checks, &opts)))
}

pub async fn state(
    State(core): State<Arc<Core>>,
    Path(state): Path<String>,
    read: Read,
) -> HttpResult {
    let Read { opts, caller, .. } = read;
    let wanted: Option<CheckStatus> = match state.as_str() {
        "any" => None,
        "passing" | "warning" | "critical" => state.parse().ok(),
        other => {
            return Err(HttpError::bad_request(format!(
                "unknown check state {other:?}: expected any, passing, warning or critical"
            )));
        }
    };
    let (idx, (checks, hidden)) = blocking(&core, &opts, Topic::Checks, |st| {
        let mut hidden = false;
        let checks: Vec<HealthCheck> = st
            .checks
            .values()
            .filter(|c| wanted.is_none_or(|w| c.status == w))
            .filter(|c| {
                let visible = caller.sees_check(c);
                hidden |= !visible;
                visible
            })
            .filter(|c| {
                st.nodes
                    .get(&c.node)
                    .is_some_and(|n| opts.node_matches(&n.meta))
            })
            .cloned()
            .collect();
        (st.tables.checks, (checks, hidden))
    })
    .await;
    Ok(filtered_by_acls(hidden, json_list(idx, &checks, &opts)))
}
