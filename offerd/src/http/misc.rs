//! Deployments, the launch queue, `/v2/info`, `/v2/leader`, `/ping`, `/metrics` and the 404
//! fallback.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use cairn_marathon::{TaskState, now_millis};
use serde_json::{Value, json};
use std::sync::atomic::Ordering::Relaxed;

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

/// Why queued tasks wait, as `offerd_pending_tasks{reason}` counts them.
const QUEUE_REASONS: [&str; 5] = ["backoff", "resources", "constraints", "ports", "no_agents"];

/// The index in [`QUEUE_REASONS`] of a queue entry's reason (from the scheduler's text).
fn queue_reason(q: &crate::model::QueueEntry) -> usize {
    let reason = q.reason.as_deref().unwrap_or("");
    if q.delay_until_ms > 0 {
        0
    } else if reason.contains("constraints") {
        2
    } else if reason.contains("host ports") || reason.contains("required host ports") {
        3
    } else if reason.contains("no agents") {
        4
    } else {
        1
    }
}

/// The autoscaler's readings and decisions, and the capacity shortfall.
fn autoscale_metrics(e: &mut cairn_metrics::Exposition, board: &crate::autoscale::Board) {
    let apps = board.apps();
    let labelled = |f: fn(&crate::autoscale::AppStatus) -> Option<f64>| {
        apps.iter()
            .filter_map(move |a| f(a).map(|v| ([("app", a.app_id.as_str())], v)))
            .collect::<Vec<_>>()
    };
    e.gauges(
        "offerd_autoscale_value",
        "The autoscaled metric's value per instance at the last round.",
        labelled(|a| a.value),
    )
    .gauges(
        "offerd_autoscale_target",
        "The autoscaling policy's target value per instance.",
        labelled(|a| Some(a.target)),
    )
    .gauges(
        "offerd_autoscale_holding",
        "1 when the autoscaler cannot decide for the app (see /v1/autoscale/status for why).",
        labelled(|a| Some(if a.decision == "hold" { 1.0 } else { 0.0 })),
    );
    let s = board.shortfall().map(|s| s.total).unwrap_or_default();
    e.gauges_by(
        "offerd_capacity_shortfall",
        "What tasks that no agent has had room for since --capacity-after need together.",
        "resource",
        [
            ("instances", f64::from(s.instances)),
            ("cpus", s.cpus),
            ("mem", s.mem),
            ("disk", s.disk),
            ("ports", f64::from(s.ports)),
        ],
    );
}

/// Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Response {
    let (apps, agents, draining, lost, deployments, queued, by_state, by_reason) =
        st.core.read(|s| {
            let mut by_state = std::collections::HashMap::new();
            for t in s.tasks.values() {
                *by_state.entry(t.state).or_insert(0u64) += 1;
            }
            let mut by_reason = [0u64; QUEUE_REASONS.len()];
            for q in s.queue.values() {
                by_reason[queue_reason(q)] += u64::from(q.count);
            }
            (
                s.apps.len(),
                s.agents.values().filter(|a| !a.lost && !a.draining).count(),
                s.agents.values().filter(|a| !a.lost && a.draining).count(),
                s.agents.values().filter(|a| a.lost).count(),
                s.deployments.len(),
                s.queue.values().map(|q| u64::from(q.count)).sum::<u64>(),
                by_state,
                by_reason,
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
    let counters = st.core.counters();
    let mut e = cairn_metrics::Exposition::new();
    e.gauge("offerd_apps", "Apps defined.", apps as f64)
        .gauges_by(
            "offerd_agents",
            "Agents by state.",
            "state",
            [
                ("active", agents as f64),
                ("draining", draining as f64),
                ("lost", lost as f64),
            ],
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
        .gauges_by(
            "offerd_pending_tasks",
            "Tasks waiting to be launched, by why they wait.",
            "reason",
            QUEUE_REASONS
                .iter()
                .zip(by_reason)
                .map(|(r, n)| (*r, n as f64)),
        )
        .counter(
            "offerd_placements_total",
            "Tasks placed on agents since this offerd started.",
            counters.placements.load(Relaxed) as f64,
        )
        .counter(
            "offerd_deployments_finished_total",
            "Deployments finished since this offerd started.",
            counters.deployments_finished.load(Relaxed) as f64,
        )
        .counter(
            "offerd_deployment_seconds_total",
            "Time the finished deployments took, added up (divide by offerd_deployments_finished_total for the mean).",
            counters.deployment_ms.load(Relaxed) as f64 / 1000.0,
        )
        .gauge(
            "offerd_event_subscribers",
            "SSE subscribers.",
            st.core.events.subscribers() as f64,
        );
    autoscale_metrics(&mut e, &st.autoscale);
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
