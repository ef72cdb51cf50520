//! `/v1/agent/*`: catalogd acts as the agent of its own node (`--node`), so services and checks
//! registered here live on that node, and TTL checks are updated here.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use cairn_wire::{
    AgentCheckRegistration, AgentConfig, AgentMember, AgentSelf, AgentServiceRegistration,
    CatalogDeregistration, CatalogRegistration, CheckStatus, CheckUpdate, HealthCheck,
};

use super::respond::{blocking, json_map, json_read};
use super::{HttpError, HttpResult, Query, Read, decode_body};
use crate::core::Core;
use crate::server_node::{CONSUL_VERSION, is_server_check, is_server_service};
use crate::watch::Topic;
use crate::writer::Command;

fn member(core: &Core) -> AgentMember {
    let mut tags = BTreeMap::new();
    tags.insert("role".to_string(), "consul".to_string());
    tags.insert("dc".to_string(), core.config.datacenter.clone());
    tags.insert(
        "build".to_string(),
        format!("{CONSUL_VERSION}:cairn-{}", env!("CARGO_PKG_VERSION")),
    );
    AgentMember {
        name: core.config.node.clone(),
        addr: core.config.advertise.to_string(),
        port: 8301,
        tags,
        status: 1,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

pub async fn self_info(State(core): State<Arc<Core>>) -> HttpResult {
    let st = core.current.load();
    let node_id = st
        .nodes
        .get(&core.config.node)
        .map(|n| n.id.clone())
        .unwrap_or_default();
    let mut meta = BTreeMap::new();
    meta.insert(
        "cairn-version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    let body = AgentSelf {
        config: AgentConfig {
            datacenter: core.config.datacenter.clone(),
            node_name: core.config.node.clone(),
            node_id,
            server: true,
            revision: "cairn".to_string(),
            version: CONSUL_VERSION.to_string(),
        },
        member: member(&core),
        meta,
    };
    Ok(json_read(st.index, &body))
}

pub async fn members(State(core): State<Arc<Core>>) -> HttpResult {
    Ok(json_read(core.index(), &[member(&core)]))
}

pub async fn services(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let opts = read.opts;
    let node = core.config.node.clone();
    let (idx, map) = blocking(&core, &opts, Topic::Node(node.clone()), |st| {
        let map: BTreeMap<String, _> = st
            .node_services(&node)
            .filter(|(k, _)| !is_server_service(&k.1))
            .map(|(k, s)| (k.1.clone(), s.clone()))
            .collect();
        (st.node_read_index(&node), map)
    })
    .await;
    Ok(json_map(idx, &map, &opts))
}

pub async fn service(State(core): State<Arc<Core>>, Path(id): Path<String>) -> HttpResult {
    let st = core.current.load();
    match st.services.get(&(core.config.node.clone(), id.clone())) {
        Some(s) => Ok(json_read(st.index, s)),
        None => Err(HttpError::not_found(format!("unknown service ID {id:?}"))),
    }
}

pub async fn checks(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let opts = read.opts;
    let node = core.config.node.clone();
    let (idx, map) = blocking(&core, &opts, Topic::Node(node.clone()), |st| {
        let map: BTreeMap<String, HealthCheck> = st
            .node_checks(&node)
            .filter(|(k, _)| !is_server_check(&k.1))
            .map(|(k, c)| (k.1.clone(), c.clone()))
            .collect();
        (st.node_read_index(&node), map)
    })
    .await;
    Ok(json_map(idx, &map, &opts))
}

pub async fn register_service(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    let reg: AgentServiceRegistration = decode_body(&body)?;
    let replace_checks = Query::parse(q.as_deref()).flag("replace-existing-checks");
    core.writer
        .submit(Command::AgentServiceRegister {
            reg: Box::new(reg),
            replace_checks,
        })
        .await?;
    Ok(json_read(core.index(), &()))
}

pub async fn deregister_service(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
) -> HttpResult {
    core.writer
        .submit(Command::AgentServiceDeregister(id))
        .await?;
    Ok(json_read(core.index(), &()))
}

pub async fn register_check(State(core): State<Arc<Core>>, body: Bytes) -> HttpResult {
    let def: AgentCheckRegistration = decode_body(&body)?;
    core.writer
        .submit(Command::AgentCheckRegister(Box::new(def)))
        .await?;
    Ok(json_read(core.index(), &()))
}

pub async fn deregister_check(State(core): State<Arc<Core>>, Path(id): Path<String>) -> HttpResult {
    core.writer
        .submit(Command::AgentCheckDeregister(id))
        .await?;
    Ok(json_read(core.index(), &()))
}

async fn set_status(core: &Core, id: String, status: CheckStatus, q: Option<String>) -> HttpResult {
    let output = Query::parse(q.as_deref())
        .get("note")
        .unwrap_or_default()
        .to_string();
    core.writer
        .submit(Command::CheckUpdate {
            check_id: id,
            status,
            output,
        })
        .await?;
    Ok(json_read(core.index(), &()))
}

pub async fn pass(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    set_status(&core, id, CheckStatus::Passing, q).await
}

pub async fn warn(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    set_status(&core, id, CheckStatus::Warning, q).await
}

pub async fn fail(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    set_status(&core, id, CheckStatus::Critical, q).await
}

pub async fn update(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult {
    let upd: CheckUpdate = decode_body(&body)?;
    let status = match upd.status {
        Some(CheckStatus::Maintenance) | None => {
            return Err(HttpError::bad_request(
                "Status: must be passing, warning or critical",
            ));
        }
        Some(s) => s,
    };
    core.writer
        .submit(Command::CheckUpdate {
            check_id: id,
            status,
            output: upd.output,
        })
        .await?;
    Ok(json_read(core.index(), &()))
}

/// Puts a service (or, with `service_id` None, the whole node) in or out of maintenance: a
/// critical check with Consul's reserved ID, so every health reader sees it.
async fn maintenance(core: &Core, service_id: Option<String>, q: Option<String>) -> HttpResult {
    let query = Query::parse(q.as_deref());
    let enable = query.bool("enable")?.ok_or_else(|| {
        HttpError::bad_request("query parameter enable: required (true or false)")
    })?;
    let reason = query.get("reason").unwrap_or_default().to_string();
    let node = core.config.node.clone();
    let check_id = match &service_id {
        Some(id) => {
            if !core
                .current
                .load()
                .services
                .contains_key(&(node.clone(), id.clone()))
            {
                return Err(HttpError::not_found(format!("unknown service ID {id:?}")));
            }
            format!("_service_maintenance:{id}")
        }
        None => "_node_maintenance".to_string(),
    };
    let cmd = if enable {
        let check = HealthCheck {
            node: node.clone(),
            check_id,
            name: if service_id.is_some() {
                "Service Maintenance Mode"
            } else {
                "Node Maintenance Mode"
            }
            .to_string(),
            status: CheckStatus::Critical,
            notes: if reason.is_empty() {
                "Maintenance mode is enabled".into()
            } else {
                reason
            },
            service_id: service_id.unwrap_or_default(),
            check_type: "maintenance".into(),
            ..Default::default()
        };
        Command::Register(Box::new(CatalogRegistration {
            node,
            skip_node_update: true,
            check: Some(check),
            ..Default::default()
        }))
    } else {
        Command::Deregister(CatalogDeregistration {
            node,
            check_id,
            ..Default::default()
        })
    };
    core.writer.submit(cmd).await?;
    Ok(json_read(core.index(), &()))
}

pub async fn service_maintenance(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> HttpResult {
    maintenance(&core, Some(id), q).await
}

pub async fn node_maintenance(State(core): State<Arc<Core>>, RawQuery(q): RawQuery) -> HttpResult {
    maintenance(&core, None, q).await
}
