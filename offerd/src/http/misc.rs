//! Deployments, the launch queue, `/v2/info`, `/v2/leader`, `/ping`, `/metrics` and the 404
//! fallback.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use cairn_marathon::{TaskState, now_millis};
use serde_json::{Value, json};

use super::guard::require_change;
use super::render::{deployment_json, queue_json};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::model::DeploymentKind;
use crate::scheduler;

pub async fn deployments(State(st): State<AppState>) -> Json<Value> {
    Json(Value::Array(st.core.read(|s| {
        s.deployments.values().map(deployment_json).collect()
    })))
}

/// `DELETE /v2/deployments/{id}`: rolls the app back to the definition before the deployment
/// (a new deployment); with `?force=true` just forgets the deployment (202, empty body).
pub async fn cancel_deployment(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let force = q.last_is_true("force");
    let version_ms = st.core.next_version_ms();
    let out = st
        .core
        .mutate(|s, tx| {
            if let Some(d) = s.deployments.get(&id) {
                require_change(&caller, &d.app_id, "cancel the deployment of")?;
            }
            let Some(d) = scheduler::apps::cancel_deployment(s, tx, &id) else {
                return Err(ApiError::NotFound(format!(
                    "DeploymentPlan {id} does not exist"
                )));
            };
            if force {
                return Ok(None);
            }
            match d.previous {
                // Undo a start: the app goes away again.
                None => {
                    s.apps.remove(&d.app_id);
                    tx.app(&d.app_id);
                    let version = cairn_marathon::iso8601_millis(tx.now_ms);
                    let deployment_id = scheduler::apps::start_deployment(
                        s,
                        tx,
                        &d.app_id,
                        &version,
                        DeploymentKind::Stop,
                        None,
                    );
                    Ok(Some(scheduler::Started {
                        deployment_id,
                        version,
                    }))
                }
                Some(prev) => {
                    if d.kind == DeploymentKind::Stop {
                        // Undo a delete: the previous definition comes back as a new version.
                        s.apps.remove(&d.app_id);
                    }
                    Ok(Some(scheduler::apps::install(
                        s, tx, prev, version_ms, false, true,
                    )?))
                }
            }
        })
        .await?;
    Ok(match out {
        None => StatusCode::ACCEPTED.into_response(),
        Some(started) => {
            Json(json!({ "deploymentId": started.deployment_id, "version": started.version }))
                .into_response()
        }
    })
}

pub async fn queue(State(st): State<AppState>, caller: Caller) -> Json<Value> {
    let now = now_millis();
    let queue = st.core.read(|s| {
        s.queue
            .iter()
            .map(|(id, q)| queue_json(s, id, q, now))
            .collect::<Vec<_>>()
    });
    let mut body = json!({ "queue": queue });
    caller.hide_env(&mut body);
    Json(body)
}

/// `DELETE /v2/queue/{app}/delay`: launch again now.
pub async fn reset_delay(
    State(st): State<AppState>,
    caller: Caller,
    Path(rest): Path<String>,
) -> Result<StatusCode, ApiError> {
    let Some(app) = rest.trim_matches('/').strip_suffix("/delay") else {
        return Err(ApiError::NotFound(format!(
            "no such resource: /v2/queue/{rest}"
        )));
    };
    let id = format!("/{app}");
    require_change(&caller, &id, "reset the launch delay of")?;
    st.core
        .mutate(|s, tx| {
            let e = s
                .apps
                .get_mut(&id)
                .ok_or_else(|| ApiError::app_not_found(&id))?;
            e.failures = 0;
            e.delay_until_ms = 0;
            tx.app(&id);
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn info(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "name": "offerd",
        "version": env!("CARGO_PKG_VERSION"),
        "buildref": "cairn",
        "elected": true,
        "leader": st.advertise,
        "frameworkId": "cairn-offerd",
        "marathon_config": {
            "checkpoint": true,
            "executor": "//cmd",
            "failover_timeout": 604800,
            "framework_name": "marathon",
            "ha": st.replicated,
            "hostname": st.advertise.split(':').next().unwrap_or_default(),
            "local_port_min": 10000,
            "local_port_max": 20000,
            "master": st.advertise,
            "task_launch_timeout": 300000,
        },
        "http_config": { "http_port": st.advertise.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) },
        "event_subscriber": { "type": "sse", "http_endpoints": [] },
        // No ZooKeeper: offerd keeps its state in its own store. Clients expect the object.
        "zookeeper_config": { "zk": "", "zk_timeout": 10000, "zk_max_versions": crate::model::MAX_VERSIONS },
    }))
}

pub async fn leader(State(st): State<AppState>) -> Json<Value> {
    Json(json!({ "leader": st.advertise }))
}

pub async fn ping() -> &'static str {
    "pong"
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource".into())
}

/// The gauge telling a replica that leads (1) from a standby (0).
pub const LEADER_METRIC: &str = "offerd_leader";
pub const LEADER_METRIC_HELP: &str =
    "Whether this offerd replica is the leader (1) or a standby (0).";

/// Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let (apps, agents, lost, deployments, queued, by_state) = st.core.read(|s| {
        let mut by_state = std::collections::HashMap::new();
        for t in s.tasks.values() {
            *by_state.entry(t.state).or_insert(0u64) += 1;
        }
        (
            s.apps.len(),
            s.agents.values().filter(|a| !a.lost).count(),
            s.agents.values().filter(|a| a.lost).count(),
            s.deployments.len(),
            s.queue.values().map(|q| u64::from(q.count)).sum::<u64>(),
            by_state,
        )
    });
    let states = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Killing,
    ]
    .map(|state| {
        (
            state.to_string(),
            by_state.get(&state).copied().unwrap_or(0),
        )
    });
    let mut e = cairn_metrics::Exposition::new();
    e.gauge("offerd_apps", "Apps defined.", apps as f64)
        .gauges_by(
            "offerd_agents",
            "Agents by state.",
            "state",
            [("active", agents as f64), ("lost", lost as f64)],
        )
        .gauges_by(
            "offerd_tasks",
            "Tasks by state.",
            "state",
            states.iter().map(|(s, n)| (s.as_str(), *n as f64)),
        )
        .gauge(
            "offerd_deployments",
            "Deployments running.",
            deployments as f64,
        )
        .gauge(
            "offerd_queued_tasks",
            "Tasks waiting to be launched.",
            queued as f64,
        )
        .gauge(
            "offerd_event_subscribers",
            "SSE subscribers.",
            st.core.events.subscribers() as f64,
        );
    if st.replicated {
        e.gauge(LEADER_METRIC, LEADER_METRIC_HELP, 1.0);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            cairn_metrics::CONTENT_TYPE,
        )],
        e.render(),
    )
        .into_response()
}
