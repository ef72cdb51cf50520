//! Deployments: when one is done, and Marathon's plan JSON that its events carry.

use cairn_marathon::App;
use serde_json::json;

use super::is_healthy;
use crate::events::Event;
use crate::model::{DeploymentKind, State, Task};
use crate::tx::Tx;

/// Of these deployments, those done end: a deployment is done when its app has exactly its
/// instances, all of the current config and healthy, and nothing is still being killed; a stop
/// is done when no task is left.
pub(super) fn finish_deployments(state: &mut State, tx: &mut Tx, ids: &[String]) {
    let mut done = Vec::new();
    for d in ids.iter().filter_map(|id| state.deployments.get(id)) {
        let tasks: Vec<&Task> = state.app_tasks(&d.app_id).collect();
        let finished = match state.apps.get(&d.app_id) {
            None => tasks.is_empty(),
            Some(entry) if d.kind == DeploymentKind::Stop => {
                tasks.is_empty() && entry.app.instances == 0
            }
            Some(entry) => {
                let cv = entry.config_version();
                tasks.len() == usize::try_from(entry.app.instances).unwrap_or(0)
                    && tasks
                        .iter()
                        .all(|t| t.config_version == cv && !t.kill_requested && is_healthy(t))
            }
        };
        if finished {
            done.push(d.id.clone());
        }
    }
    for id in done {
        if let Some(d) = state.deployments.remove(&id) {
            tx.deployment(&id);
            tx.finished_deployments
                .push(tx.now_ms.saturating_sub(d.started_ms));
            let plan = deployment_plan_json(&d, state.apps.get(&d.app_id).map(|e| &e.app));
            tx.event(Event::new(
                "deployment_step_success",
                tx.now_ms,
                json!({ "plan": plan, "currentStep": plan["steps"].as_array().and_then(|s| s.last()).cloned() }),
            ));
            tx.event(Event::new(
                "deployment_success",
                tx.now_ms,
                json!({ "id": d.id, "plan": plan }),
            ));
            if !state.apps.contains_key(&d.app_id) {
                tx.event(Event::new(
                    "app_terminated_event",
                    tx.now_ms,
                    json!({ "appId": d.app_id }),
                ));
            }
            tracing::info!(deployment = %d.id, app = %d.app_id, "deployment finished");
        }
    }
}

/// Marathon's deployment plan JSON (`deployment_info` and friends): id, version, steps and the
/// root groups before (`original`) and after (`target`) as Marathon 1.4 and the `marathon`
/// Python client (which reads both) know them. The groups hold the deployment's own app only
/// (with the groups on its path), not every app: an event per deployment stays small on a
/// cluster of thousands of apps. `target` is the app the deployment moves to (none for a stop).
pub fn deployment_plan_json(
    d: &crate::model::Deployment,
    target: Option<&App>,
) -> serde_json::Value {
    let steps: Vec<_> = d
        .steps()
        .iter()
        .map(|actions| json!({ "actions": actions.iter().map(|a| json!({"action": a, "app": d.app_id})).collect::<Vec<_>>() }))
        .collect();
    let original_version = d
        .previous
        .as_ref()
        .and_then(|a| a.version.clone())
        .unwrap_or_else(|| d.version.clone());
    json!({
        "id": d.id,
        "version": d.version,
        "original": root_group(&d.app_id, d.previous.as_ref(), &original_version),
        "target": root_group(&d.app_id, target, &d.version),
        "steps": steps,
    })
}

/// Marathon's group JSON from the root down to `app_id`'s group, holding `app` if any
/// (`/shop/web` → `/` ⊃ `/shop` ⊃ the app).
fn root_group(app_id: &str, app: Option<&App>, version: &str) -> serde_json::Value {
    let segments: Vec<&str> = app_id.split('/').filter(|s| !s.is_empty()).collect();
    let parents = segments.len().saturating_sub(1);
    let group = |id: String, apps: Vec<serde_json::Value>, groups: Vec<serde_json::Value>| json!({ "id": id, "apps": apps, "groups": groups, "pods": [], "dependencies": [], "version": version });
    let apps: Vec<serde_json::Value> = app
        .map(|a| serde_json::to_value(a).unwrap_or(serde_json::Value::Null))
        .into_iter()
        .collect();
    // Innermost group first, then wrap it in its parents up to the root.
    let mut inner = group(
        format!("/{}", segments[..parents].join("/")),
        apps,
        Vec::new(),
    );
    for depth in (0..parents).rev() {
        inner = group(
            format!("/{}", segments[..depth].join("/")),
            Vec::new(),
            vec![inner],
        );
    }
    inner
}
