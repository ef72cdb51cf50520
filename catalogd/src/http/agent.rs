//! `/v1/agent/*`: catalogd acts as the agent of its own node (`--node`), so services and checks
//! registered here live on that node, TTL checks are updated here, and the agent's own reports
//! (`self`, `members`, `metrics`, `monitor`) describe catalogd. Agent endpoints answer without
//! the `X-Consul-Index` read headers, as Consul's do, and writes answer 200 with an empty body.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use cairn_wire::{
    AgentCheckRegistration, AgentMember, AgentService, AgentServiceRegistration,
    CatalogDeregistration, CatalogRegistration, CheckStatus, HealthCheck,
};
use serde_json::{Value, json};

use super::query::Who;
use super::respond::{filtered_by_acls, json_map_plain, json_plain};
use super::{HttpError, HttpResult, QueryParams, Read, decode_body, decode_value};
use crate::core::Core;
use crate::server_node::{
    CONSUL_VERSION, SERF_CHECK_ID, is_server_check, is_server_service, origin_coordinate,
};
use crate::watch::Topic;
use crate::writer::Command;

/// Serf's LAN and WAN gossip ports, reported in member lists.
const SERF_LAN_PORT: u16 = 8301;
const SERF_WAN_PORT: u16 = 8302;

/// An empty 200, Consul's answer to agent writes.
fn done() -> HttpResult {
    Ok(StatusCode::OK.into_response())
}

/// The member record of catalogd itself.
fn self_member(core: &Core, node_id: &str, wan: bool) -> AgentMember {
    let dc = &core.config.datacenter;
    let mut tags: BTreeMap<String, String> = [
        ("role", "consul"),
        ("dc", dc.as_str()),
        ("segment", ""),
        ("id", node_id),
        ("vsn", "2"),
        ("vsn_min", "2"),
        ("vsn_max", "3"),
        ("raft_vsn", "3"),
        ("port", "8300"),
        ("bootstrap", "1"),
        ("acls", "0"),
        ("ft_fs", "1"),
        ("ft_si", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    tags.insert(
        "build".into(),
        format!("{CONSUL_VERSION}:cairn-{}", env!("CARGO_PKG_VERSION")),
    );
    if !wan {
        tags.insert("wan_join_port".into(), SERF_WAN_PORT.to_string());
    }
    member(
        if wan {
            format!("{}.{dc}", core.config.node)
        } else {
            core.config.node.clone()
        },
        core.config.advertise.to_string(),
        if wan { SERF_WAN_PORT } else { SERF_LAN_PORT },
        tags,
        1,
    )
}

fn member(
    name: String,
    addr: String,
    port: u16,
    tags: BTreeMap<String, String>,
    status: u8,
) -> AgentMember {
    AgentMember {
        name,
        addr,
        port,
        tags,
        status,
        protocol_min: 1,
        protocol_max: 5,
        protocol_cur: 2,
        delegate_min: 2,
        delegate_max: 5,
        delegate_cur: 4,
    }
}

/// `GET /v1/agent/self`.
pub async fn self_info(State(core): State<Arc<Core>>) -> HttpResult {
    let st = core.current.load();
    let id = core.node_id();
    let leader = super::misc::raft_addr(&core);
    let cfg = &core.config;
    let version = env!("CARGO_PKG_VERSION");
    let body = json!({
        "Config": {
            "Datacenter": cfg.datacenter,
            "PrimaryDatacenter": cfg.datacenter,
            "NodeName": cfg.node,
            "NodeID": id,
            "Revision": format!("cairn-{version}"),
            "Server": true,
            "Version": CONSUL_VERSION,
            "BuildDate": "1970-01-01T00:00:01Z",
        },
        "DebugConfig": {
            "Datacenter": cfg.datacenter,
            "NodeName": cfg.node,
            "NodeID": id,
            "ServerMode": true,
            "Bootstrap": true,
            "ClientAddrs": [cfg.http_addr.ip().to_string()],
            "HTTPPort": cfg.http_addr.port(),
            "EnableScriptChecks": cfg.enable_script_checks,
            "SessionTTLMin": cairn_wire::format_go_duration(cfg.min_session_ttl),
            "ACLsEnabled": false,
            "DataDir": cfg.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
        },
        "Coord": origin_coordinate(),
        "Member": self_member(&core, &id, false),
        "Stats": {
            "agent": {
                "check_monitors": "0",
                "check_ttls": st.checks.values().filter(|c| c.node == cfg.node && !c.definition.ttl.is_empty()).count().to_string(),
                "checks": st.node_checks(&cfg.node).filter(|(k, _)| !is_server_check(&k.1)).count().to_string(),
                "services": st.node_services(&cfg.node).filter(|(k, _)| !is_server_service(&k.1)).count().to_string(),
            },
            "build": {
                "prerelease": "",
                "revision": format!("cairn-{version}"),
                "version": CONSUL_VERSION,
                "version_metadata": "",
            },
            "consul": {
                "acl": "disabled",
                "bootstrap": "true",
                "known_datacenters": "1",
                "leader": "true",
                "leader_addr": leader,
                "server": "true",
            },
            "raft": {
                "applied_index": st.index.to_string(),
                "commit_index": st.index.to_string(),
                "fsm_pending": "0",
                "last_contact": "0",
                "last_log_index": st.index.to_string(),
                "last_log_term": "1",
                "num_peers": "0",
                "protocol_version": "3",
                "protocol_version_max": "3",
                "protocol_version_min": "0",
                "state": "Leader",
                "term": "1",
            },
            "serf_lan": serf_stats(),
            "serf_wan": serf_stats(),
            "runtime": {
                "arch": std::env::consts::ARCH,
                "os": std::env::consts::OS,
                "cpu_count": std::thread::available_parallelism().map_or(1, |n| n.get()).to_string(),
                "version": format!("rust (cairn {version})"),
            },
        },
        "Meta": {"consul-network-segment": ""},
        // catalogd serves no xDS: the section says so instead of pointing at a port.
        "xDS": {"SupportedProxies": {}, "Port": -1, "Ports": {"Plaintext": -1, "TLS": -1}},
    });
    Ok(json_plain(&body))
}

fn serf_stats() -> Value {
    json!({
        "coordinate_resets": "0", "encrypted": "false", "event_queue": "0", "event_time": "1",
        "failed": "0", "health_score": "0", "intent_queue": "0", "left": "0",
        "member_time": "1", "members": "1", "query_queue": "0", "query_time": "1",
    })
}

/// `GET /v1/agent/version`.
pub async fn version() -> HttpResult {
    Ok(json_plain(&json!({
        "SHA": format!("cairn-{}", env!("CARGO_PKG_VERSION")),
        "BuildDate": "1970-01-01T00:00:01Z",
        "HumanVersion": CONSUL_VERSION,
        "FIPS": "",
    })))
}

/// `GET /v1/agent/members`: catalogd, and every node a taskrun agent keeps alive (those with a
/// `serfHealth` check): alive while it passes, failed once it does not. `?wan` with a value
/// lists the WAN pool, where only servers are, named `<node>.<dc>`.
pub async fn members(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(q): RawQuery,
) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let wan = query.first("wan").is_some_and(|v| !v.is_empty());
    if let Some(seg) = query.first("segment")
        && !seg.is_empty()
        && seg != "_all"
    {
        return Err(if wan {
            HttpError::bad_request("Cannot provide a segment with wan=true")
        } else {
            HttpError::internal("Network segments are not supported in this version of Consul")
        });
    }
    let id = core.node_id();
    let mut out = vec![self_member(&core, &id, wan)];
    if !wan {
        let st = core.current.load();
        for (name, node) in st.nodes.iter() {
            if *name == core.config.node {
                continue;
            }
            let Some(serf) = st.checks.get(&(name.clone(), SERF_CHECK_ID.to_string())) else {
                continue;
            };
            let tags = BTreeMap::from([
                ("role".to_string(), "node".to_string()),
                ("dc".to_string(), core.config.datacenter.clone()),
                ("id".to_string(), node.id.clone()),
                ("segment".to_string(), String::new()),
            ]);
            let status = if serf.status == CheckStatus::Passing {
                1
            } else {
                4
            };
            out.push(member(
                name.clone(),
                node.address.clone(),
                SERF_LAN_PORT,
                tags,
                status,
            ));
        }
    }
    // Consul shows a member only to who may read its node.
    let before = out.len();
    out.retain(|m| {
        let node = m.name.split('.').next().unwrap_or(&m.name);
        caller.authz.node_read(node)
    });
    let hidden = out.len() != before;
    Ok(filtered_by_acls(hidden, json_plain(&out)))
}

/// The agent's view of the services on catalogd's node.
fn agent_services(core: &Core, st: &crate::state::State) -> BTreeMap<String, AgentService> {
    st.node_services(&core.config.node)
        .filter(|(k, _)| !is_server_service(&k.1))
        .map(|(k, s)| {
            (
                k.1.clone(),
                AgentService::from_node_service(s, &core.config.datacenter),
            )
        })
        .collect()
}

pub async fn services(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let mut map = agent_services(&core, &core.current.load());
    let before = map.len();
    map.retain(|_, s| read.caller.authz.service_read(&s.service));
    let hidden = map.len() != before;
    Ok(filtered_by_acls(hidden, json_map_plain(&map, &read.opts)))
}

/// A stable hash of a service's agent form, for `?hash` blocking and `ContentHash`.
fn content_hash(svc: &AgentService) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(svc).unwrap_or_default().hash(&mut h);
    format!("{:016x}", h.finish())
}

/// `GET /v1/agent/service/:id`: one service with its `ContentHash`; `?hash=` blocks until the
/// service differs from that hash or `wait` passes.
pub async fn service(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    read: Read,
) -> HttpResult {
    let lookup = |st: &crate::state::State| {
        st.services
            .get(&(core.config.node.clone(), id.clone()))
            .filter(|_| !is_server_service(&id))
            .map(|s| {
                let mut a = AgentService::from_node_service(s, &core.config.datacenter);
                a.content_hash = content_hash(&a);
                a
            })
    };
    let mut found = lookup(&core.current.load());
    if let Some(wanted) = read.query.first("hash").filter(|h| !h.is_empty()) {
        let deadline = tokio::time::Instant::now() + read.opts.wait;
        let sub = core
            .registry
            .subscribe(Topic::Node(core.config.node.clone()));
        while found.as_ref().is_some_and(|s| s.content_hash == wanted) && !core.registry.closing() {
            let notified = sub.notify().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            found = lookup(&core.current.load());
            if found.as_ref().is_none_or(|s| s.content_hash != wanted) {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                break;
            }
            found = lookup(&core.current.load());
        }
    }
    match found {
        Some(s) => {
            let mut resp = json_plain(&s);
            if let Ok(v) = HeaderValue::from_str(&s.content_hash) {
                resp.headers_mut()
                    .insert(super::respond::names::CONTENT_HASH, v);
            }
            Ok(resp)
        }
        None => Err(HttpError::not_found(format!("unknown service ID: {id}"))),
    }
}

/// Consul's `HealthChecks.AggregatedStatus`: maintenance when a maintenance check is among
/// `checks`, else the worst status (no checks: passing).
pub(super) fn aggregated_status<'a>(
    checks: impl IntoIterator<Item = &'a cairn_wire::HealthCheck> + Clone,
) -> CheckStatus {
    let maintenance = checks.clone().into_iter().any(|c| {
        c.check_id == "_node_maintenance" || c.check_id.starts_with("_service_maintenance:")
    });
    if maintenance {
        CheckStatus::Maintenance
    } else {
        cairn_wire::aggregate_status(checks.into_iter().map(|c| c.status))
    }
}

/// The agent's health report of one local service: aggregated status (maintenance wins, then
/// critical, warning, passing), the service and its checks (node checks included).
fn service_health(core: &Core, st: &crate::state::State, id: &str) -> Option<(CheckStatus, Value)> {
    let svc = st
        .services
        .get(&(core.config.node.clone(), id.to_string()))
        .filter(|_| !is_server_service(id))?;
    let checks = st.instance_checks(&core.config.node, id);
    let status = aggregated_status(&checks);
    let body = json!({
        "AggregatedStatus": status.as_str(),
        "Service": AgentService::from_node_service(svc, &core.config.datacenter),
        "Checks": checks,
    });
    Some((status, body))
}

/// The HTTP status Consul answers a service's health with, for load balancers that read only it.
fn health_code(status: CheckStatus) -> StatusCode {
    match status {
        CheckStatus::Passing => StatusCode::OK,
        CheckStatus::Warning => StatusCode::TOO_MANY_REQUESTS,
        CheckStatus::Critical | CheckStatus::Maintenance => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `GET /v1/agent/health/service/id/:id[?format=text]`.
pub async fn health_by_id(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    read: Read,
) -> HttpResult {
    let text = read.query.first("format") == Some("text");
    let st = core.current.load();
    let Some((status, body)) = service_health(&core, &st, &id) else {
        let message = format!("ServiceId {id} not found");
        return Ok(if text {
            (StatusCode::NOT_FOUND, message).into_response()
        } else {
            (StatusCode::NOT_FOUND, axum::Json(json!(message))).into_response()
        });
    };
    Ok(if text {
        (health_code(status), status.as_str().to_string()).into_response()
    } else {
        (health_code(status), axum::Json(body)).into_response()
    })
}

/// `GET /v1/agent/health/service/name/:name[?format=text]`: every local instance; the status
/// code is the worst instance's.
pub async fn health_by_name(
    State(core): State<Arc<Core>>,
    Path(name): Path<String>,
    read: Read,
) -> HttpResult {
    let text = read.query.first("format") == Some("text");
    let st = core.current.load();
    let reports: Vec<(CheckStatus, Value)> = st
        .node_services(&core.config.node)
        .filter(|(_, s)| s.service == name)
        .filter_map(|(k, _)| service_health(&core, &st, &k.1))
        .collect();
    if reports.is_empty() {
        let message = format!("ServiceName {name} Not Found");
        return Ok(if text {
            (StatusCode::NOT_FOUND, message).into_response()
        } else {
            (StatusCode::NOT_FOUND, axum::Json(json!([]))).into_response()
        });
    }
    let worst = cairn_wire::aggregate_status(reports.iter().map(|(s, _)| *s));
    Ok(if text {
        (health_code(worst), worst.as_str().to_string()).into_response()
    } else {
        let bodies: Vec<Value> = reports.into_iter().map(|(_, b)| b).collect();
        (health_code(worst), axum::Json(bodies)).into_response()
    })
}

pub async fn checks(State(core): State<Arc<Core>>, read: Read) -> HttpResult {
    let st = core.current.load();
    let mut hidden = false;
    let map: BTreeMap<String, HealthCheck> = st
        .node_checks(&core.config.node)
        .filter(|(k, _)| !is_server_check(&k.1))
        .filter(|(_, c)| {
            let visible = read.caller.sees_check(c);
            hidden |= !visible;
            visible
        })
        .map(|(k, c)| (k.1.clone(), c.clone()))
        .collect();
    Ok(filtered_by_acls(hidden, json_map_plain(&map, &read.opts)))
}

pub async fn register_service(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> HttpResult {
    let reg: AgentServiceRegistration = decode_body(&body)?;
    caller.require(
        caller.authz.service_write(&reg.name),
        "service",
        "write",
        Some(&reg.name),
    )?;
    // Consul turns this on for `?replace-existing-checks`, `=` and `=true` only.
    let replace_checks = matches!(
        QueryParams::parse(q.as_deref()).first("replace-existing-checks"),
        Some("" | "true")
    );
    core.writer
        .submit(Command::AgentServiceRegister {
            reg: Box::new(reg),
            replace_checks,
        })
        .await?;
    done()
}

pub async fn deregister_service(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
) -> HttpResult {
    core.writer
        .submit(Command::AgentServiceDeregister(id))
        .await?;
    done()
}

pub async fn register_check(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    body: Bytes,
) -> HttpResult {
    let def: AgentCheckRegistration = decode_body(&body)?;
    let service = (!def.service_id.is_empty()).then(|| {
        core.current
            .load()
            .services
            .get(&(core.config.node.clone(), def.service_id.clone()))
            .map_or_else(|| def.service_id.clone(), |s| s.service.clone())
    });
    caller.may_write_check(&core.config.node, service.as_deref())?;
    core.writer
        .submit(Command::AgentCheckRegister(Box::new(def)))
        .await?;
    done()
}

pub async fn deregister_check(State(core): State<Arc<Core>>, Path(id): Path<String>) -> HttpResult {
    core.writer
        .submit(Command::AgentCheckDeregister(id))
        .await?;
    done()
}

async fn set_status(core: &Core, id: String, status: CheckStatus, q: Option<String>) -> HttpResult {
    let output = QueryParams::parse(q.as_deref())
        .first("note")
        .unwrap_or_default()
        .to_string();
    core.writer
        .submit(Command::TtlUpdate {
            check_id: id,
            status,
            output,
        })
        .await?;
    done()
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

/// `PUT /v1/agent/check/update/:id` with `{"Status", "Output"}`.
pub async fn update(
    State(core): State<Arc<Core>>,
    Path(id): Path<String>,
    body: Bytes,
) -> HttpResult {
    let v = decode_value(&body)?;
    let raw_status = v.get("Status").and_then(Value::as_str).unwrap_or_default();
    let status = match raw_status {
        "passing" => CheckStatus::Passing,
        "warning" => CheckStatus::Warning,
        "critical" => CheckStatus::Critical,
        other => {
            return Err(HttpError::bad_request(format!(
                "Invalid check status: '{other}'"
            )));
        }
    };
    let output = v
        .get("Output")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    core.writer
        .submit(Command::TtlUpdate {
            check_id: id,
            status,
            output,
        })
        .await?;
    done()
}

/// Reads `?enable=` as Consul does (Go's `strconv.ParseBool`).
fn enable_param(query: &QueryParams) -> Result<bool, HttpError> {
    let raw = query
        .first("enable")
        .ok_or_else(|| HttpError::bad_request("Missing value for enable"))?;
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(HttpError::bad_request(format!(
            "Invalid value for enable: {raw:?}"
        ))),
    }
}

/// Puts a service (or, with `service_id` None, the whole node) in or out of maintenance: a
/// critical check with Consul's reserved ID, so every health reader sees it.
async fn maintenance(core: &Core, service_id: Option<String>, q: Option<String>) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    if service_id.as_deref() == Some("") {
        return Err(HttpError::bad_request("Missing service ID"));
    }
    let enable = enable_param(&query)?;
    let reason = query.first("reason").unwrap_or_default().to_string();
    let node = core.config.node.clone();
    let check_id = match &service_id {
        Some(id) => {
            if !core
                .current
                .load()
                .services
                .contains_key(&(node.clone(), id.clone()))
            {
                return Err(HttpError::not_found(format!(
                    "Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name."
                )));
            }
            format!("_service_maintenance:{id}")
        }
        None => "_node_maintenance".to_string(),
    };
    let what = if service_id.is_some() {
        "service"
    } else {
        "node"
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
                format!(
                    "Maintenance mode is enabled for this {what}, but no reason was provided. This is a default message."
                )
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
    done()
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

/// `PUT /v1/agent/reload`: catalogd's settings come from its command line, so there is nothing
/// to re-read; the answer is Consul's.
pub async fn reload() -> HttpResult {
    done()
}

/// `PUT /v1/agent/leave`: answers, then shuts catalogd down as SIGTERM would.
pub async fn leave(State(core): State<Arc<Core>>) -> HttpResult {
    tracing::info!("leave requested over the API; shutting down");
    core.request_shutdown();
    done()
}

/// `PUT /v1/agent/force-leave/:node`: a member that is not catalogd is removed from the
/// catalog, as Consul's leader reaps a member that left.
pub async fn force_leave(State(core): State<Arc<Core>>, Path(node): Path<String>) -> HttpResult {
    let node = node
        .strip_suffix(&format!(".{}", core.config.datacenter))
        .unwrap_or(&node)
        .to_string();
    let known = node == core.config.node || core.current.load().nodes.contains_key(&node);
    if !known {
        return Err(HttpError::internal(format!(
            "agent: No node found with name '{node}'"
        )));
    }
    if node != core.config.node {
        core.writer
            .submit(Command::Deregister(CatalogDeregistration {
                node,
                ..Default::default()
            }))
            .await?;
    }
    done()
}

/// `PUT /v1/agent/token/:type`: ACL tokens of the agent. Without the ACL system (issue of its
/// own) Consul's answer is the same as here.
/// `PUT /v1/agent/token/:kind` with `{"Token": ...}`: the agent's tokens, kept in memory as
/// Consul keeps them without `enable_token_persistence`. The `default` token is what a request
/// without a token is made with; the others name tokens for roles catalogd does not have
/// (replication, a separate agent) and are only kept. acl:write is checked by the guard.
pub async fn token(
    State(core): State<Arc<Core>>,
    Who(caller): Who,
    Path(kind): Path<String>,
    body: Bytes,
) -> HttpResult {
    if !caller.enforced {
        return Err(HttpError {
            status: StatusCode::UNAUTHORIZED,
            message: "ACL support disabled".into(),
        });
    }
    let token = decode_value(&body)?["Token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    match kind.as_str() {
        "default" | "acl_token" => core.acl.set_default_token(token),
        "agent"
        | "acl_agent_token"
        | "agent_recovery"
        | "agent_master"
        | "acl_agent_master_token"
        | "replication"
        | "acl_replication_token"
        | "config_file_service_registration"
        | "dns" => {}
        other => {
            return Err(HttpError::not_found(format!("Token {other:?} is unknown")));
        }
    }
    Ok(StatusCode::OK.into_response())
}

/// `GET /v1/agent/metrics`: Consul's JSON summary by default, the Prometheus text format with
/// `?format=prometheus` (or a Prometheus `Accept`).
pub async fn metrics(
    State(core): State<Arc<Core>>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if query.first("format") == Some("prometheus")
        || accept.starts_with("application/openmetrics-text")
        || accept.starts_with("text/plain; version=0.4.0")
    {
        // The guard asked for agent:read, as Consul's /v1/agent/metrics does.
        return Ok(super::misc::prometheus(&core));
    }
    let body = core
        .metrics
        .summary(&core.current.load(), core.registry.topic_count());
    Ok(json_plain(&body))
}

/// `GET /v1/agent/monitor?loglevel=&logjson`: streams catalogd's log from now on, one line per
/// record at or above the level asked for (records below the process's own log filter are never
/// produced). A listener that falls behind skips records rather than slowing catalogd down.
pub async fn monitor(State(core): State<Arc<Core>>, RawQuery(q): RawQuery) -> HttpResult {
    let query = QueryParams::parse(q.as_deref());
    let raw = query.first("loglevel").unwrap_or("INFO");
    let level = match raw.to_ascii_uppercase().as_str() {
        "" | "INFO" => tracing::Level::INFO,
        "TRACE" => tracing::Level::TRACE,
        "DEBUG" => tracing::Level::DEBUG,
        "WARN" => tracing::Level::WARN,
        "ERR" | "ERROR" => tracing::Level::ERROR,
        _ => {
            return Err(HttpError::bad_request(format!("Unknown log level: {raw}")));
        }
    };
    let as_json = query.present("logjson");
    let mut rx = core.log_tap.subscribe();
    let closing = core.shutdown_token();
    let stream = async_stream_lines(move |tx| async move {
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(rec) => {
                        // tracing orders levels from TRACE (most verbose) up: keep what is at
                        // least as severe as asked.
                        if rec.level > level {
                            continue;
                        }
                        let mut line = if as_json { rec.json() } else { rec.text() };
                        line.push('\n');
                        if tx.send(Ok(Bytes::from(line))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = closing.cancelled() => return,
            }
        }
    });
    Ok((StatusCode::OK, Body::from_stream(stream)).into_response())
}

/// A byte stream fed by a task; the task ends when the client goes away (its sends fail).
fn async_stream_lines<F, Fut>(
    produce: F,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(produce(tx));
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}
