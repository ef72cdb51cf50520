//! The offers API for other schedulers (see [`crate::offers`]): `GET /v1/offers` (long poll),
//! `POST /v1/offers/{id}/accept` with task specs, `POST /v1/offers/{id}/decline` with a refuse
//! filter; and reading or killing single tasks: `GET /v1/tasks/{id}`, `POST /v1/tasks/{id}/kill`,
//! `GET /v1/frameworks/{name}/tasks`. Status changes of framework tasks are also on
//! `/v2/events` as `status_update_event`.

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use cairn_http::QueryParams;
use cairn_marathon::{ValidationError, now_millis, parse_app};
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::{require_change, require_framework};
use super::render::task_json;
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::model::Task;
use crate::offers::{DEFAULT_REFUSE_SECONDS, OfferError};
use crate::scheduler;
use cairn_placement::{Demand, Placer};

fn framework(q: &QueryParams) -> Result<String, ApiError> {
    let name = q
        .last("framework")
        .ok_or_else(|| ApiError::BadRequest("?framework=NAME is required".into()))?;
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        return Err(ApiError::BadRequest(format!(
            "framework {name:?}: use 1-64 lowercase letters, digits and '-'"
        )));
    }
    if name == crate::scheduler::jobs::JOBS_FRAMEWORK {
        return Err(ApiError::BadRequest(format!(
            "framework {name:?} is offerd's own (the runs of /v1/jobs): choose another name"
        )));
    }
    Ok(name.to_string())
}

impl From<OfferError> for ApiError {
    fn from(e: OfferError) -> Self {
        match e {
            OfferError::Unknown(_) => ApiError::NotFound(e.to_string()),
            OfferError::WrongFramework(_) => ApiError::Conflict(e.to_string()),
        }
    }
}

/// `GET /v1/offers?framework=NAME&wait=30s`: the framework's offers; when there are none, waits
/// (up to `wait`, default 30 s, at most 5 min) for a change that might make one.
pub async fn list(
    State(st): State<AppState>,
    caller: Caller,
    q: QueryParams,
) -> Result<Json<Value>, ApiError> {
    let fw = framework(&q)?;
    require_framework(&caller, &fw)?;
    let wait = match q.last("wait") {
        None | Some("") => Duration::from_secs(30),
        Some(w) => cairn_wire::parse_go_duration(w)
            .map_err(|e| ApiError::BadRequest(format!("wait: {e}")))?,
    }
    .min(Duration::from_secs(300));
    let deadline = tokio::time::Instant::now() + wait;
    let mut changes = st.core.changes();
    loop {
        changes.borrow_and_update();
        let offers = st.core.read(|s| {
            let agents = scheduler::build_offers(s);
            let addresses: HashMap<String, String> = s
                .agents
                .values()
                .map(|a| (a.node.clone(), a.address.clone()))
                .collect();
            st.offers.issue(&fw, &agents, &addresses, now_millis())
        });
        if !offers.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(json!({ "offers": offers })));
        }
        tokio::select! {
            _ = changes.changed() => {}
            // Refusals and expiries end by time, not by a change.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// One task a framework launches on an offer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskRequest {
    name: String,
    #[serde(default)]
    cmd: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    container: Option<Value>,
    cpus: f64,
    mem: f64,
    #[serde(default)]
    disk: f64,
    /// Host ports wanted (assigned from the offer).
    #[serde(default)]
    ports: usize,
    #[serde(default)]
    env: Value,
    #[serde(default)]
    labels: Value,
    #[serde(default, rename = "killGracePeriodSeconds")]
    kill_grace_period_seconds: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Accept {
    tasks: Vec<TaskRequest>,
}

/// `POST /v1/offers/{id}/accept?framework=NAME` `{"tasks": [...]}`.
pub async fn accept(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryParams,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let fw = framework(&q)?;
    require_framework(&caller, &fw)?;
    let req: Accept = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"tasks\": [...]}}: {e}")))?;
    if req.tasks.is_empty() {
        return Err(ApiError::BadRequest(
            "accept needs at least one task (or decline the offer)".into(),
        ));
    }
    // Each task is checked as the app it would be (`/<framework>/<name>`): same rules, same paths.
    let mut apps = Vec::new();
    for (i, t) in req.tasks.iter().enumerate() {
        let mut app = json!({
            "id": format!("/{fw}/{}", t.name),
            "cpus": t.cpus, "mem": t.mem, "disk": t.disk,
            "portDefinitions": vec![json!({"port": 0}); t.ports],
        });
        for (k, v) in [
            ("cmd", json!(t.cmd)),
            ("args", json!(t.args)),
            ("container", json!(t.container)),
        ] {
            if !v.is_null() {
                app[k] = v;
            }
        }
        if !t.env.is_null() {
            app["env"] = t.env.clone();
        }
        if !t.labels.is_null() {
            app["labels"] = t.labels.clone();
        }
        if let Some(g) = t.kill_grace_period_seconds {
            app["taskKillGracePeriodSeconds"] = json!(g);
        }
        let app = parse_app(app, None)
            .and_then(|app| st.host_policy.admit(&app).map(|()| app))
            .map_err(|e| match e {
                ValidationError::Invalid(v) => {
                    ApiError::Invalid(ValidationError::Invalid(v).prefixed(&format!("/tasks({i})")))
                }
                other => ApiError::Invalid(other),
            })?;
        apps.push(app);
    }
    let offer = st.offers.take(&fw, &id, now_millis())?;
    let (cpus, mem, disk) = apps.iter().fold((0.0, 0.0, 0.0), |a, x| {
        (a.0 + x.cpus, a.1 + x.mem, a.2 + x.disk)
    });
    let ports: usize = apps.iter().map(|a| a.port_count()).sum();
    let offered_ports: usize = offer.resources.ports.iter().map(|r| r.len()).sum();
    let r = &offer.resources;
    if cpus > r.cpus + 1e-9 || mem > r.mem + 1e-9 || disk > r.disk + 1e-9 || ports > offered_ports {
        let msg = format!(
            "the tasks need cpus {cpus}, mem {mem}, disk {disk}, {ports} ports; the offer has cpus {}, mem {}, disk {}, {offered_ports} ports",
            r.cpus, r.mem, r.disk
        );
        st.offers.restore(offer);
        return Err(ApiError::Invalid(ValidationError::Invalid(vec![
            cairn_marathon::Violation {
                path: "/tasks".into(),
                errors: vec![msg],
            },
        ])));
    }
    let node = offer.node.clone();
    let launched = st
        .core
        .mutate(|s, tx| {
            let mut offers = scheduler::build_offers(s);
            let Some(i) = offers.iter().position(|o| o.node == node) else {
                return Err(ApiError::Conflict(format!(
                    "offer {id} is no longer valid: agent {node} is gone or draining"
                )));
            };
            let mut here = vec![offers.swap_remove(i)];
            // Check everything fits before creating anything: all tasks or none.
            let mut placements = Vec::new();
            for app in &apps {
                if !here[0].app_counts.contains_key(&app.id) {
                    scheduler::count_app_tasks(s, &mut here, &app.id);
                }
                let mut placer =
                    Placer::new(&here, Demand::of(app)).map_err(ApiError::BadRequest)?;
                let p = placer.place_one(&mut here).map_err(|why| {
                    ApiError::Conflict(format!(
                        "offer {id} is no longer valid: the agent's free resources changed ({why})"
                    ))
                })?;
                placements.push(p.ports);
            }
            let mut out = Vec::new();
            for (app, ports) in apps.iter().zip(placements) {
                let mut app = app.clone();
                app.version = Some(cairn_marathon::iso8601_millis(tx.now_ms));
                let version = app.version.clone().unwrap_or_default();
                let task_id = scheduler::launch(s, tx, &app, &version, &node, ports, Some(&fw));
                out.push(s.tasks.get(&task_id).map(task_json).unwrap_or(Value::Null));
            }
            Ok::<_, ApiError>(out)
        })
        .await?;
    Ok(Json(json!({ "tasks": launched })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Decline {
    #[serde(default)]
    refuse_seconds: Option<f64>,
}

/// `POST /v1/offers/{id}/decline?framework=NAME` `{"refuse_seconds": 30}`.
pub async fn decline(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    q: QueryParams,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let fw = framework(&q)?;
    require_framework(&caller, &fw)?;
    let d: Decline = if body.iter().all(u8::is_ascii_whitespace) {
        Decline::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("expected {{\"refuse_seconds\": N}}: {e}")))?
    };
    let refuse = d.refuse_seconds.unwrap_or(DEFAULT_REFUSE_SECONDS);
    if !refuse.is_finite() || refuse < 0.0 {
        return Err(ApiError::BadRequest(format!(
            "refuse_seconds must be >= 0, got {refuse}"
        )));
    }
    let now = now_millis();
    let offer = st.offers.take(&fw, &id, now)?;
    st.offers.refuse(
        &fw,
        &offer.node,
        now.saturating_add((refuse * 1000.0) as u64),
    );
    Ok(Json(
        json!({ "declined": id, "node": offer.node, "refuse_seconds": refuse }),
    ))
}

/// A task with how it ended, for frameworks.
fn framework_task_json(t: &Task) -> Value {
    let mut v = task_json(t);
    v["message"] = json!(t.message);
    v["framework"] = json!(t.framework);
    v
}

/// `GET /v1/tasks/{id}`: an active task, or one that ended recently.
pub async fn get_task(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    st.core
        .read(|s| {
            s.tasks
                .get(&id)
                .or_else(|| s.finished.iter().rev().find(|t| t.id == id))
                .map(framework_task_json)
        })
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("Task '{id}' does not exist")))
}

/// `POST /v1/tasks/{id}/kill`.
pub async fn kill_task(
    State(st): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    st.core
        .mutate(|s, tx| {
            let Some(t) = s.tasks.get(&id).filter(|t| t.is_desired()) else {
                return Err(ApiError::NotFound(format!(
                    "Task '{id}' does not exist or is already ending"
                )));
            };
            require_change(&caller, &t.app_id, "kill the tasks of")?;
            scheduler::kill_task(s, tx, &id);
            Ok(())
        })
        .await?;
    Ok(Json(json!({ "killed": id })))
}

/// `GET /v1/frameworks/{name}/tasks`: its active tasks and those that ended recently.
pub async fn framework_tasks(State(st): State<AppState>, Path(name): Path<String>) -> Json<Value> {
    let tasks = st.core.read(|s| {
        s.tasks
            .values()
            .chain(s.finished.iter())
            .filter(|t| t.framework.as_deref() == Some(name.as_str()))
            .map(framework_task_json)
            .collect::<Vec<_>>()
    });
    Json(json!({ "tasks": tasks }))
}
