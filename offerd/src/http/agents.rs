//! The agent protocol (see `cairn_marathon::agent`): registration, the desired task set as a
//! blocking query, and batched status updates.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use cairn_marathon::{
    AgentInfo, AgentRegistration, RegisterResponse, Resources, StatusBatch, TaskState, now_millis,
};
use serde_json::Value;

use super::guard::{require_admin, require_node};
use super::{ApiError, AppState};
use crate::auth::{AgentIdentity, Caller};
use crate::model::Agent;
use crate::scheduler;

/// Longest a desired-set poll is held.
const MAX_WAIT: Duration = Duration::from_secs(600);

fn heartbeat(st: &AppState) -> Duration {
    st.core.cfg.agent_timeout / 3
}

pub async fn register(
    State(st): State<AppState>,
    agent: AgentIdentity,
    body: Bytes,
) -> Result<Json<RegisterResponse>, ApiError> {
    let reg: AgentRegistration = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid agent registration: {e}")))?;
    if reg.node.is_empty() {
        return Err(ApiError::BadRequest(
            "agent registration: node must not be empty".into(),
        ));
    }
    require_node(&agent, &reg.node)?;
    let r = &reg.resources;
    if [r.cpus, r.mem, r.disk]
        .iter()
        .any(|x| !x.is_finite() || *x < 0.0)
    {
        return Err(ApiError::BadRequest(
            "agent registration: resources must be non-negative".into(),
        ));
    }
    let node = reg.node.clone();
    st.core.mutate(|s, tx| {
        let known: std::collections::HashSet<&str> =
            reg.tasks.iter().map(|u| u.task_id.as_str()).collect();
        let mut agent = Agent::from_registration(&reg, tx.now_ms);
        agent.draining = s.agents.get(&node).is_some_and(|a| a.draining);
        let changed = s.agents.get(&node).is_none_or(|a| *a != agent);
        if changed {
            tracing::info!(%node, address = %reg.address, resources = %reg.resources, "agent registered");
            s.agents.insert(node.clone(), agent);
            tx.agent(&node);
        }
        tx.nodes.insert(node.clone());
        for u in &reg.tasks {
            scheduler::apply_status(s, tx, &node, u);
        }
        // Tasks offerd saw running there that the agent no longer knows are gone.
        let vanished: Vec<String> = s
            .tasks
            .on_node(&node)
            .filter(|t| t.is_active() && t.state != TaskState::Staging && !known.contains(t.id.as_str()))
            .map(|t| t.id.clone())
            .collect();
        for id in vanished {
            scheduler::finish_task(s, tx, &id, TaskState::Lost, "the agent restarted without this task");
        }
        Ok::<_, ApiError>(())
    }).await?;
    Ok(Json(RegisterResponse {
        node,
        heartbeat_ms: heartbeat(&st).as_millis() as u64,
    }))
}

pub async fn list(State(st): State<AppState>) -> Json<Vec<AgentInfo>> {
    let now = now_millis();
    let beats = st.core.heartbeats();
    Json(st.core.read(|s| {
        let offers = scheduler::build_offers(s);
        let offers: std::collections::HashMap<&str, &cairn_placement::Offer> =
            offers.iter().map(|o| (o.node.as_str(), o)).collect();
        s.agents
            .values()
            .map(|a| {
                let free = offers.get(a.node.as_str());
                let used = free.map_or(Resources::default(), |o| Resources {
                    cpus: a.resources.cpus - o.free_cpus,
                    mem: a.resources.mem - o.free_mem,
                    disk: a.resources.disk - o.free_disk,
                    ports: Vec::new(),
                });
                AgentInfo {
                    node: a.node.clone(),
                    address: a.address.clone(),
                    http_addr: a.http_addr.clone(),
                    resources: a.resources.clone(),
                    used,
                    attributes: a.attributes.clone(),
                    state: agent_state(s, a).into(),
                    tasks: s.tasks.on_node(&a.node).filter(|t| t.is_active()).count(),
                    last_seen_ms_ago: now.saturating_sub(
                        beats
                            .get(&a.node)
                            .map_or(a.last_seen_ms, |&b| b.max(a.last_seen_ms)),
                    ),
                }
            })
            .collect()
    }))
}

/// `lost`, `drained` (draining with no task left), `draining` or `active`.
fn agent_state(s: &crate::model::State, a: &Agent) -> &'static str {
    if a.lost {
        "lost"
    } else if a.draining && !s.tasks.on_node(&a.node).any(|t| t.is_active()) {
        "drained"
    } else if a.draining {
        "draining"
    } else {
        "active"
    }
}

/// `POST /v1/agents/{node}/drain` (drain) and `DELETE` (undrain): the agent's state after.
pub async fn drain(
    State(st): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
    method: axum::http::Method,
) -> Result<Json<Value>, ApiError> {
    let on = method == axum::http::Method::POST;
    require_admin(
        &caller,
        if on {
            "drain an agent"
        } else {
            "undrain an agent"
        },
    )?;
    st.core
        .mutate(|s, tx| {
            let a = s
                .agents
                .get_mut(&node)
                .ok_or_else(|| ApiError::NotFound(format!("agent {node:?} is not registered")))?;
            if a.draining != on {
                a.draining = on;
                tx.agent(&node);
                tracing::info!(%node, draining = on, "agent maintenance changed");
            }
            Ok::<_, ApiError>(())
        })
        .await?;
    let now = st
        .core
        .read(|s| s.agents.get(&node).map(|a| agent_state(s, a)));
    Ok(Json(serde_json::json!({ "node": node, "state": now })))
}

/// `GET /v1/agents/{node}/tasks?index=N&wait=D`.
pub async fn desired(
    State(st): State<AppState>,
    agent: AgentIdentity,
    Path(node): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    require_node(&agent, &node)?;
    // The agents' long poll reads `index` and `wait` as Consul's blocking queries do.
    let index = q.u64("index")?.unwrap_or(0);
    let wait = match q.first("wait") {
        None | Some("") => heartbeat(&st),
        Some(v) => cairn_wire::parse_go_duration(v)
            .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?,
    }
    .min(MAX_WAIT)
    .min(heartbeat(&st).max(Duration::from_secs(1)));
    let Some((tasks, index)) = st.core.desired_tasks(&node, index, wait).await? else {
        return Err(ApiError::NotFound(format!(
            "agent {node:?} is not registered"
        )));
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&index.to_string()) {
        headers.insert("X-Consul-Index", v);
    }
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The specs are encoded already: the answer is their bytes joined.
    Ok((headers, tasks.into_json()).into_response())
}

/// `POST /v1/agents/{node}/status`.
pub async fn status(
    State(st): State<AppState>,
    agent: AgentIdentity,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    require_node(&agent, &node)?;
    let batch: StatusBatch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid status batch: {e}")))?;
    if !st.core.touch_agent(&node) {
        return Err(ApiError::NotFound(format!(
            "agent {node:?} is not registered"
        )));
    }
    let accepted = batch.updates.len();
    // Coalesced with the other agents' reports into one change (see Core::report_status).
    st.core.report_status(&node, batch.updates).await?;
    Ok(Json(serde_json::json!({ "accepted": accepted })))
}

/// `DELETE /v1/agents/{node}`: forgets a lost agent now (as `--lost-agent-retention` would);
/// a connected agent is refused with 409, since it would simply register again.
pub async fn remove(
    State(st): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> Result<Json<Value>, ApiError> {
    require_admin(&caller, "remove an agent")?;
    st.core
        .mutate(|s, tx| {
            let a = s
                .agents
                .get(&node)
                .ok_or_else(|| ApiError::NotFound(format!("agent {node:?} is not registered")))?;
            if !a.lost {
                return Err(ApiError::Conflict(format!(
                    "agent {node:?} is connected (state {}): only a lost agent can be removed; stop it and wait --agent-timeout, or drain it",
                    agent_state(s, a)
                )));
            }
            tracing::info!(%node, "lost agent removed by the operator");
            scheduler::forget_agent(s, tx, &node);
            Ok(())
        })
        .await?;
    Ok(Json(
        serde_json::json!({ "node": node, "state": "removed" }),
    ))
}
