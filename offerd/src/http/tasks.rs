//! `/v2/tasks`: every task, and killing tasks by id across apps (each task's app must be one
//! the caller may change).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use cairn_marathon::TaskState;
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::require_change;
use super::render::task_json;
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::scheduler;

pub async fn list(State(st): State<AppState>, q: QueryParams) -> Json<Value> {
    let wanted: Vec<TaskState> = q
        .all("status")
        .filter_map(|v| match v {
            "running" => Some(TaskState::Running),
            "staging" => Some(TaskState::Staging),
            _ => None,
        })
        .collect();
    let tasks = st.core.read(|s| {
        s.tasks
            .values()
            .filter(|t| t.is_active())
            .filter(|t| wanted.is_empty() || wanted.contains(&t.state))
            .map(task_json)
            .collect::<Vec<_>>()
    });
    Json(json!({ "tasks": tasks }))
}

#[derive(Deserialize)]
struct Ids {
    ids: Vec<String>,
}

/// `POST /v2/tasks/delete {"ids": [...]}` (`?scale=true` lowers each app's instances).
pub async fn delete_many(
    State(st): State<AppState>,
    caller: Caller,
    q: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut ids: Ids = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"ids\": [task ids]}}: {e}")))?;
    // A task named twice is one task: it must lower its app's instances once.
    let mut seen = std::collections::HashSet::new();
    ids.ids.retain(|id| seen.insert(id.clone()));
    let scale = q.last_is_true("scale");
    let force = q.last_is_true("force");
    let version_ms = st.core.next_version_ms();
    let out = st
        .core
        .mutate(|s, tx| {
            let unknown: Vec<&String> = ids
                .ids
                .iter()
                .filter(|id| !s.tasks.get(id).is_some_and(|t| t.is_desired()))
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::NotFound(format!(
                    "Tasks do not exist: {unknown:?}"
                )));
            }
            // Every task's app, before anything is killed: all or nothing.
            for id in &ids.ids {
                require_change(&caller, &s.tasks[id].app_id, "kill the tasks of")?;
            }
            let mut deployment = None;
            if scale {
                let mut per_app: std::collections::BTreeMap<String, i64> = Default::default();
                for id in &ids.ids {
                    *per_app.entry(s.tasks[id].app_id.clone()).or_default() += 1;
                }
                for (app_id, n) in per_app {
                    let Some(entry) = s.apps.get(&app_id) else {
                        continue;
                    };
                    let mut app = entry.app.clone();
                    app.instances = (app.instances - n).max(0);
                    deployment = Some(scheduler::apps::install(
                        s, tx, app, version_ms, false, force,
                    )?);
                }
            }
            for id in &ids.ids {
                scheduler::kill_task(s, tx, id);
            }
            Ok(deployment)
        })
        .await?;
    Ok(match out {
        Some(started) => {
            Json(json!({ "deploymentId": started.deployment_id, "version": started.version }))
                .into_response()
        }
        None => Json(json!({})).into_response(),
    })
}
