//! `/v2/apps`: create, read, update (partial by default), scale, restart, delete, versions, and
//! the per-app task endpoints. Every change is validated whole before anything is applied, and
//! is refused with 409 while the app has a deployment running, unless `?force=true`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_http::QueryParams;
use cairn_marathon::{App, TaskState, ValidationError, merge_update, parse_app};
use serde_json::{Value, json};

use super::guard::require_change;
use super::render::{Embed, app_json, task_json};
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::scheduler::{self, Started};

fn json_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::Invalid(ValidationError::Syntax(e.to_string())))
}

/// The `Marathon-Deployment-Id` header.
fn deployment_headers(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert("Marathon-Deployment-Id", v);
    }
    headers
}

/// `{"deploymentId","version"}` with the `Marathon-Deployment-Id` header.
fn deployment_response(status: StatusCode, started: &Started) -> Response {
    let headers = deployment_headers(&started.deployment_id);
    (
        status,
        headers,
        Json(json!({ "deploymentId": started.deployment_id, "version": started.version })),
    )
        .into_response()
}

pub async fn list(State(st): State<AppState>, caller: Caller, q: QueryParams) -> Json<Value> {
    let embed = Embed::parse(q.all("embed"), "apps.");
    let id_filter = q.last("id").map(str::to_string);
    let cmd_filter = q.last("cmd").map(str::to_string);
    let label_filter = q.last("label").map(|l| match l.split_once("==") {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (l.to_string(), None),
    });
    let apps = st.core.read(|s| {
        s.apps
            .values()
            .filter(|e| id_filter.as_deref().is_none_or(|f| e.app.id.contains(f)))
            .filter(|e| {
                cmd_filter
                    .as_deref()
                    .is_none_or(|f| e.app.cmd.as_deref().is_some_and(|c| c.contains(f)))
            })
            .filter(|e| match &label_filter {
                None => true,
                Some((k, None)) => e.app.labels.contains_key(k),
                Some((k, Some(v))) => e.app.labels.get(k) == Some(v),
            })
            .map(|e| app_json(s, e, embed))
            .collect::<Vec<_>>()
    });
    let mut body = json!({ "apps": apps });
    caller.hide_env(&mut body);
    Json(body)
}

pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    q: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let app = admitted(&st, json_body(&body)?, None)?;
    require_change(&caller, &app.id, "create")?;
    let version_ms = st.core.next_version_ms();
    let force = q.last_is_true("force");
    let (dep, mut body) = st
        .core
        .mutate(|s, tx| {
            let id = app.id.clone();
            let started = scheduler::apps::create(s, tx, app, version_ms, force)?;
            let entry = &s.apps[&id];
            Ok::<_, ApiError>((
                started.deployment_id,
                app_json(
                    s,
                    entry,
                    Embed {
                        deployments: true,
                        ..Default::default()
                    },
                ),
            ))
        })
        .await?;
    caller.hide_env(&mut body);
    let mut headers = deployment_headers(&dep);
    if let Some(Ok(loc)) = body["id"]
        .as_str()
        .map(|id| HeaderValue::from_str(&format!("/v2/apps{id}")))
    {
        headers.insert("Location", loc);
    }
    Ok((StatusCode::CREATED, headers, Json(body)).into_response())
}

/// The current definition as an update's base: what the operator gave, without the stamps.
fn current_input(app: &App) -> Value {
    let mut v = serde_json::to_value(app).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.remove("version");
        m.remove("versionInfo");
    }
    v
}

/// Turns an update body into the full new definition (partial by default; a body naming a
/// stored `version` restores that version).
async fn updated_app(
    st: &AppState,
    id: &str,
    patch: Value,
    partial: bool,
) -> Result<App, ApiError> {
    if let Some(v) = patch.get("version").and_then(Value::as_str)
        && patch.as_object().is_some_and(|m| m.len() == 1)
    {
        let old = st
            .core
            .version(id, v)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("App '{id}' has no version {v}")))?;
        return admitted(st, current_input(&old), Some(id));
    }
    let base = st
        .core
        .read(|s| s.apps.get(id).map(|e| current_input(&e.app)));
    let merged = match (partial, base) {
        (true, Some(base)) => merge_update(&base, &patch),
        _ => patch,
    };
    admitted(st, merged, Some(id))
}

/// A new definition: valid (Marathon's rules) and within what the operator lets apps ask of
/// the hosts.
fn admitted(st: &AppState, value: Value, id_from_path: Option<&str>) -> Result<App, ApiError> {
    let app = parse_app(value, id_from_path)?;
    let group = cairn_metronome::APP_GROUP;
    if app.id == group
        || app
            .id
            .strip_prefix(group)
            .is_some_and(|r| r.starts_with('/'))
    {
        return Err(ApiError::Invalid(ValidationError::Invalid(vec![
            cairn_marathon::Violation {
                path: "/id".into(),
                errors: vec![format!(
                    "{group} is reserved for the runs of jobs (/v1/jobs): choose another group"
                )],
            },
        ])));
    }
    st.host_policy.admit(&app)?;
    Ok(app)
}

pub async fn put_one(
    State(st): State<AppState>,
    caller: Caller,
    Path(rest): Path<String>,
    q: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = format!("/{}", rest.trim_matches('/'));
    require_change(&caller, &id, "update")?;
    let partial = q.last("partialUpdate") != Some("false");
    let app = updated_app(&st, &id, json_body(&body)?, partial).await?;
    let version_ms = st.core.next_version_ms();
    let force = q.last_is_true("force");
    let started = st
        .core
        .mutate(|s, tx| {
            Ok::<_, ApiError>(scheduler::apps::install(
                s, tx, app, version_ms, false, force,
            )?)
        })
        .await?;
    Ok(deployment_response(StatusCode::OK, &started))
}

pub async fn put_bulk(
    State(st): State<AppState>,
    caller: Caller,
    q: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Value::Array(items) = json_body(&body)? else {
        return Err(ApiError::BadRequest(
            "PUT /v2/apps takes a JSON array of apps".into(),
        ));
    };
    let partial = q.last("partialUpdate") != Some("false");
    let mut apps = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let Some(id) = item.get("id").and_then(Value::as_str).map(str::to_string) else {
            return Err(ApiError::Invalid(ValidationError::Invalid(vec![
                cairn_marathon::Violation {
                    path: format!("({i})/id"),
                    errors: vec!["every app of a bulk update needs an id".into()],
                },
            ])));
        };
        let id = format!("/{}", id.trim_matches('/'));
        require_change(&caller, &id, "update")?;
        let app = updated_app(&st, &id, item, partial)
            .await
            .map_err(|e| match e {
                ApiError::Invalid(v) => ApiError::Invalid(v.prefixed(&format!("({i})"))),
                other => other,
            })?;
        apps.push(app);
    }
    let force = q.last_is_true("force");
    let mut versions = Vec::new();
    for _ in &apps {
        versions.push(st.core.next_version_ms());
    }
    let apps = apps.into_iter().zip(versions).collect();
    let started = st
        .core
        .mutate(|s, tx| Ok::<_, ApiError>(scheduler::apps::install_all(s, tx, apps, force)?))
        .await?;
    Ok(deployment_response(StatusCode::OK, &started))
}

/// What a path under `/v2/apps/` names.
enum Sub {
    App,
    Tasks,
    Task(String),
    Versions,
    Version(String),
    Restart,
}

/// Splits `shop/web/tasks/<id>` into the app id and the sub-resource. A suffix counts only when
/// what precedes it is a known app (an app may itself be called `tasks`).
fn split(st: &AppState, rest: &str) -> (String, Sub) {
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let known = |n: usize| {
        let id = format!("/{}", segs[..n].join("/"));
        st.core.read(|s| s.apps.contains_key(&id)).then_some(id)
    };
    let n = segs.len();
    if n >= 2 {
        if let Some(id) = known(n - 1) {
            match segs[n - 1] {
                "tasks" => return (id, Sub::Tasks),
                "versions" => return (id, Sub::Versions),
                "restart" => return (id, Sub::Restart),
                _ => {}
            }
        }
        if n >= 3
            && let Some(id) = known(n - 2)
        {
            match segs[n - 2] {
                "tasks" => return (id, Sub::Task(segs[n - 1].to_string())),
                "versions" => return (id, Sub::Version(segs[n - 1].to_string())),
                _ => {}
            }
        }
    }
    (format!("/{}", segs.join("/")), Sub::App)
}

pub async fn get_sub(
    State(st): State<AppState>,
    caller: Caller,
    Path(rest): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, sub) = split(&st, &rest);
    let mut found = get_sub_json(&st, &id, sub, &rest).await?;
    caller.hide_env(&mut found.0);
    Ok(found)
}

async fn get_sub_json(
    st: &AppState,
    id: &str,
    sub: Sub,
    rest: &str,
) -> Result<Json<Value>, ApiError> {
    match sub {
        Sub::App => st
            .core
            .read(|s| {
                s.apps
                    .get(id)
                    .map(|e| json!({ "app": app_json(s, e, Embed::single()) }))
            })
            .map(Json)
            .ok_or_else(|| ApiError::app_not_found(id)),
        Sub::Tasks => Ok(Json(json!({
            "tasks": st.core.read(|s| s.app_tasks(id).map(task_json).collect::<Vec<_>>())
        }))),
        Sub::Versions => st
            .core
            .read(|s| {
                s.apps
                    .get(id)
                    .map(|e| json!({ "versions": e.versions.iter().rev().collect::<Vec<_>>() }))
            })
            .map(Json)
            .ok_or_else(|| ApiError::app_not_found(id)),
        Sub::Version(v) => st
            .core
            .version(id, &v)
            .await?
            .map(|app| Json(serde_json::to_value(app).unwrap_or(Value::Null)))
            .ok_or_else(|| ApiError::NotFound(format!("App '{id}' has no version {v}"))),
        Sub::Task(_) | Sub::Restart => Err(ApiError::NotFound(format!(
            "no such resource: /v2/apps/{rest}"
        ))),
    }
}

pub async fn post_sub(
    State(st): State<AppState>,
    caller: Caller,
    Path(rest): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let (id, sub) = split(&st, &rest);
    let Sub::Restart = sub else {
        return Err(ApiError::NotFound(format!(
            "no such resource: POST /v2/apps/{rest}"
        )));
    };
    require_change(&caller, &id, "restart")?;
    let version_ms = st.core.next_version_ms();
    let force = q.last_is_true("force");
    let started = st
        .core
        .mutate(|s, tx| {
            let app = s
                .apps
                .get(&id)
                .map(|e| e.app.clone())
                .ok_or_else(|| ApiError::app_not_found(&id))?;
            Ok::<_, ApiError>(scheduler::apps::install(
                s, tx, app, version_ms, true, force,
            )?)
        })
        .await?;
    Ok(deployment_response(StatusCode::OK, &started))
}

pub async fn delete_sub(
    State(st): State<AppState>,
    caller: Caller,
    Path(rest): Path<String>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    let (id, sub) = split(&st, &rest);
    let force = q.last_is_true("force");
    let scale = q.last_is_true("scale");
    match &sub {
        Sub::App => require_change(&caller, &id, "delete")?,
        Sub::Tasks | Sub::Task(_) => require_change(&caller, &id, "kill the tasks of")?,
        _ => {}
    }
    match sub {
        Sub::App => {
            let started = st
                .core
                .mutate(|s, tx| Ok::<_, ApiError>(scheduler::apps::delete(s, tx, &id, force)?))
                .await?;
            Ok(deployment_response(StatusCode::OK, &started))
        }
        Sub::Tasks => {
            let host = q.last("host").map(str::to_string);
            kill_tasks(&st, &id, None, host, scale, force).await
        }
        Sub::Task(task_id) => kill_tasks(&st, &id, Some(task_id), None, scale, force).await,
        _ => Err(ApiError::NotFound(format!(
            "no such resource: DELETE /v2/apps/{rest}"
        ))),
    }
}

/// Kills an app's tasks (one, all, or those on `host`); with `scale`, lowers `instances` by
/// the number killed so they are not replaced.
async fn kill_tasks(
    st: &AppState,
    app_id: &str,
    task_id: Option<String>,
    host: Option<String>,
    scale: bool,
    force: bool,
) -> Result<Response, ApiError> {
    let version_ms = st.core.next_version_ms();
    let out = st
        .core
        .mutate(|s, tx| {
            if !s.apps.contains_key(app_id) {
                return Err(ApiError::app_not_found(app_id));
            }
            let victims: Vec<String> = s
                .app_tasks(app_id)
                .filter(|t| t.is_desired())
                .filter(|t| task_id.as_deref().is_none_or(|id| t.id == id))
                .filter(|t| host.as_deref().is_none_or(|h| t.host == h || t.node == h))
                .map(|t| t.id.clone())
                .collect();
            if let Some(tid) = &task_id
                && victims.is_empty()
            {
                return Err(ApiError::NotFound(format!("Task '{tid}' does not exist")));
            }
            let before: Vec<Value> = victims
                .iter()
                .filter_map(|id| s.tasks.get(id))
                .map(|t| {
                    let mut j = task_json(t);
                    j["state"] = json!(TaskState::Killing.as_str());
                    j
                })
                .collect();
            let scaled = if scale {
                let mut app = s.apps[app_id].app.clone();
                app.instances = (app.instances - victims.len() as i64).max(0);
                Some(scheduler::apps::install(
                    s, tx, app, version_ms, false, force,
                )?)
            } else {
                None
            };
            for id in &victims {
                scheduler::kill_task(s, tx, id);
            }
            Ok::<_, ApiError>((before, scaled))
        })
        .await?;
    Ok(match out {
        (_, Some(started)) => deployment_response(StatusCode::OK, &started),
        (mut tasks, None) if task_id.is_some() && !tasks.is_empty() => {
            Json(json!({ "task": tasks.swap_remove(0) })).into_response()
        }
        (tasks, None) => Json(json!({ "tasks": tasks })).into_response(),
    })
}
