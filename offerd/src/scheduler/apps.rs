//! App lifecycle: installing a new definition (a stored version, old versions trimmed to
//! [`MAX_VERSIONS`], a deployment started), deleting an app, and the deployment lock that
//! refuses both while a deployment of the app runs unless forced (which cancels it).
//!
//! The HTTP layer parses requests into [`App`]s and maps [`AppError`] to Marathon's answers;
//! everything that decides what happens to the state lives here.

use cairn_marathon::{App, iso8601_millis};
use serde_json::{Value, json};

use super::{deployment_plan_json, next_version, runs_as};
use crate::events::Event;
use crate::model::{AppEntry, Deployment, DeploymentKind, MAX_VERSIONS, State};
use crate::service_ports::{self, ServicePortError};
use crate::tx::Tx;

/// Why an app change was refused. A refusal changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Deployments of the app run (their ids) and the change was not forced.
    #[error("app is locked by deployments {deployments:?}")]
    Locked { deployments: Vec<String> },
    /// A create names an app that exists.
    #[error("An app with id [{0}] already exists.")]
    Exists(String),
    /// The change names an app that does not exist.
    #[error("App '{0}' does not exist")]
    NotFound(String),
    /// The app's service ports clash with another app's, or none are left.
    #[error(transparent)]
    ServicePorts(#[from] ServicePortError),
}

/// What an accepted change started: its deployment and the version it deploys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub deployment_id: String,
    pub version: String,
}

/// The ids of the deployments running for `app_id`.
fn deployments_of(s: &State, app_id: &str) -> Vec<String> {
    s.deployments.of_app(app_id).map(|d| d.id.clone()).collect()
}

/// Refuses a change while a deployment of `app_id` runs, unless `force` (which cancels them).
pub fn check_lock(s: &mut State, tx: &mut Tx, app_id: &str, force: bool) -> Result<(), AppError> {
    let running = deployments_of(s, app_id);
    if running.is_empty() {
        return Ok(());
    }
    if !force {
        return Err(AppError::Locked {
            deployments: running,
        });
    }
    for id in running {
        cancel_deployment(s, tx, &id);
    }
    Ok(())
}

/// Forgets a deployment (its app stays as it is) with a `deployment_failed` event; returns it,
/// or `None` when there is no such deployment.
pub fn cancel_deployment(s: &mut State, tx: &mut Tx, id: &str) -> Option<Deployment> {
    let d = s.deployments.remove(id)?;
    tx.deployment(id);
    let plan = deployment_plan_json(&d, s.apps.get(&d.app_id).map(|e| &e.app));
    tx.event(Event::new(
        "deployment_failed",
        tx.now_ms,
        json!({ "id": d.id, "plan": plan }),
    ));
    Some(d)
}

/// Starts a deployment for `app_id` towards `version`; returns its id.
pub fn start_deployment(
    s: &mut State,
    tx: &mut Tx,
    app_id: &str,
    version: &str,
    kind: DeploymentKind,
    previous: Option<App>,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let d = Deployment {
        id: id.clone(),
        version: version.to_string(),
        app_id: app_id.to_string(),
        kind,
        previous,
        started_ms: tx.now_ms,
    };
    let plan = deployment_plan_json(&d, s.apps.get(app_id).map(|e| &e.app));
    tx.event(Event::new(
        "deployment_info",
        tx.now_ms,
        json!({ "plan": plan, "currentStep": plan["steps"][0] }),
    ));
    tx.deployment(&id);
    s.deployments.insert(d);
    id
}

/// Creates a new app: refused when one with its id exists.
pub fn create(
    s: &mut State,
    tx: &mut Tx,
    app: App,
    version_ms: u64,
    force: bool,
) -> Result<Started, AppError> {
    if s.apps.contains_key(&app.id) {
        return Err(AppError::Exists(app.id));
    }
    install(s, tx, app, version_ms, false, force)
}

/// Installs a new version of an app (creating it when new) and starts its deployment
/// (`restart` forces a new config version, so every task is replaced).
pub fn install(
    s: &mut State,
    tx: &mut Tx,
    mut app: App,
    version_ms: u64,
    restart: bool,
    force: bool,
) -> Result<Started, AppError> {
    let id = app.id.clone();
    let prev = s.apps.get(&id).cloned();
    // Ports first: a refusal must leave everything as it was, and `check_lock` with `force`
    // already cancels deployments.
    service_ports::assign(
        &mut app,
        prev.as_ref().map(|p| &p.app),
        &service_ports::used_service_ports(&s.apps, &id),
    )?;
    check_lock(s, tx, &id, force)?;
    let running_config = s
        .app_tasks(&id)
        .find(|t| t.is_desired() && runs_as(t, &app))
        .map(|t| t.config_version.clone());
    let mut entry = next_version(prev.as_ref(), app, version_ms, restart, running_config);
    let version = entry.app.version.clone().unwrap_or_default();
    let kind = match &prev {
        None => DeploymentKind::Start,
        Some(p) if p.config_version() == entry.config_version() => DeploymentKind::Scale,
        Some(_) => DeploymentKind::Restart,
    };
    tx.version(&entry.app);
    tx.app(&id);
    tx.event(Event::new(
        "api_post_event",
        tx.now_ms,
        json!({ "clientIp": "", "uri": format!("/v2/apps{id}"), "appDefinition": serde_json::to_value(&entry.app).unwrap_or(Value::Null) }),
    ));
    trim_versions(&mut entry, tx);
    s.apps.insert(id.clone(), entry);
    let deployment_id = start_deployment(s, tx, &id, &version, kind, prev.map(|p| p.app));
    Ok(Started {
        deployment_id,
        version,
    })
}

/// Drops an app's oldest versions beyond [`MAX_VERSIONS`], from its list and from the store.
fn trim_versions(entry: &mut AppEntry, tx: &mut Tx) {
    let excess = entry.versions.len().saturating_sub(MAX_VERSIONS);
    for v in entry.versions.drain(..excess) {
        tx.drop_version(&entry.app.id, &v);
    }
}

/// Installs several apps (`(definition, version time)`) whole or not at all: service ports and
/// locks are checked for all of them before anything changes. Returns the last deployment
/// started (or none and now's version for an empty list).
pub fn install_all(
    s: &mut State,
    tx: &mut Tx,
    apps: Vec<(App, u64)>,
    force: bool,
) -> Result<Started, AppError> {
    let (apps, version_times): (Vec<App>, Vec<u64>) = apps.into_iter().unzip();
    let mut with_prev: Vec<(App, Option<App>)> = apps
        .into_iter()
        .map(|a| {
            let prev = s.apps.get(&a.id).map(|e| e.app.clone());
            (a, prev)
        })
        .collect();
    service_ports::assign_all(&mut with_prev, &s.apps)?;
    if !force {
        let locked: Vec<String> = with_prev
            .iter()
            .filter_map(|(a, _)| s.deployment_of(&a.id).map(|d| d.id.clone()))
            .collect();
        if !locked.is_empty() {
            return Err(AppError::Locked {
                deployments: locked,
            });
        }
    }
    let mut last = Started {
        deployment_id: String::new(),
        version: iso8601_millis(tx.now_ms),
    };
    for ((app, _), version_ms) in with_prev.into_iter().zip(version_times) {
        last = install(s, tx, app, version_ms, false, force)?;
    }
    Ok(last)
}

/// Deletes an app: its definition goes, and a stop deployment kills its tasks.
pub fn delete(s: &mut State, tx: &mut Tx, app_id: &str, force: bool) -> Result<Started, AppError> {
    let Some(entry) = s.apps.get(app_id) else {
        return Err(AppError::NotFound(app_id.to_string()));
    };
    let previous = entry.app.clone();
    check_lock(s, tx, app_id, force)?;
    s.apps.remove(app_id);
    tx.app(app_id);
    let version = iso8601_millis(tx.now_ms);
    let deployment_id = start_deployment(
        s,
        tx,
        app_id,
        &version,
        DeploymentKind::Stop,
        Some(previous),
    );
    Ok(Started {
        deployment_id,
        version,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::testkit::{NOW, app, state};

    fn web(instances: i64) -> App {
        app(json!({ "id": "/web", "cmd": "sleep 1000", "instances": instances }))
    }

    fn event_types(tx: &Tx) -> Vec<&str> {
        tx.events.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn install_keeps_the_newest_max_versions_and_drops_the_rest_from_the_store() {
        let mut s = State::default();
        let mut dropped = Vec::new();
        let mut installed = Vec::new();
        for i in 0..(MAX_VERSIONS as u64 + 5) {
            let mut tx = Tx::new(NOW + i);
            let def = app(json!({ "id": "/web", "cmd": format!("sleep {i}"), "instances": 0 }));
            let started = install(&mut s, &mut tx, def, NOW + i, false, true).expect("installed");
            installed.push(started.version);
            dropped.extend(tx.dropped_versions);
        }
        assert_eq!(s.apps["/web"].versions, installed[5..]);
        let expected: Vec<(String, String)> = installed[..5]
            .iter()
            .map(|v| ("/web".to_string(), v.clone()))
            .collect();
        assert_eq!(dropped, expected);
    }

    #[test]
    fn a_locked_app_is_refused_and_left_as_it_was() {
        let mut s = State::default();
        let first = install(&mut s, &mut Tx::new(NOW), web(1), NOW, false, false).expect("created");
        let before = s.apps["/web"].clone();

        let mut tx = Tx::new(NOW + 1);
        let err = install(&mut s, &mut tx, web(3), NOW + 1, false, false).expect_err("locked");
        match err {
            AppError::Locked { deployments } => {
                assert_eq!(deployments, std::slice::from_ref(&first.deployment_id))
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert_eq!(s.apps["/web"].versions, before.versions);
        assert_eq!(s.apps["/web"].app.instances, 1);
        assert!(s.deployments.contains_key(&first.deployment_id));
        assert!(tx.events.is_empty(), "{:?}", event_types(&tx));
    }

    #[test]
    fn a_forced_install_cancels_the_running_deployment() {
        let mut s = State::default();
        let first = install(&mut s, &mut Tx::new(NOW), web(1), NOW, false, false).expect("created");

        let mut tx = Tx::new(NOW + 1);
        let second = install(&mut s, &mut tx, web(3), NOW + 1, false, true).expect("forced");
        assert!(!s.deployments.contains_key(&first.deployment_id));
        assert_eq!(
            s.deployments[&second.deployment_id].kind,
            DeploymentKind::Scale
        );
        assert_eq!(s.apps["/web"].app.instances, 3);
        assert_eq!(
            event_types(&tx),
            ["deployment_failed", "api_post_event", "deployment_info"]
        );
    }

    #[test]
    fn create_refuses_an_existing_app_and_delete_an_unknown_one() {
        let mut s = state(&[], &[web(1)]);
        let mut tx = Tx::new(NOW);
        let err = create(&mut s, &mut tx, web(2), NOW, false).expect_err("exists");
        assert_eq!(err.to_string(), "An app with id [/web] already exists.");
        assert_eq!(s.apps["/web"].app.instances, 1);
        let err = delete(&mut s, &mut tx, "/db", false).expect_err("unknown");
        assert!(
            matches!(&err, AppError::NotFound(id) if id == "/db"),
            "{err:?}"
        );
        assert!(s.deployments.is_empty());
    }

    #[test]
    fn delete_removes_the_app_with_a_stop_deployment_unless_locked() {
        let mut s = State::default();
        install(&mut s, &mut Tx::new(NOW), web(1), NOW, false, false).expect("created");
        let err = delete(&mut s, &mut Tx::new(NOW + 1), "/web", false).expect_err("locked");
        assert!(matches!(err, AppError::Locked { .. }), "{err:?}");
        assert!(s.apps.contains_key("/web"));

        let started = delete(&mut s, &mut Tx::new(NOW + 2), "/web", true).expect("forced");
        assert!(!s.apps.contains_key("/web"));
        assert_eq!(s.deployments.len(), 1);
        assert_eq!(
            s.deployments[&started.deployment_id].kind,
            DeploymentKind::Stop
        );
    }

    #[test]
    fn install_all_refuses_every_app_when_one_is_locked() {
        let mut s = state(
            &[],
            &[app(
                json!({ "id": "/db", "cmd": "sleep 1", "instances": 1 }),
            )],
        );
        install(&mut s, &mut Tx::new(NOW), web(1), NOW, false, false).expect("created");
        let apps = vec![
            (
                app(json!({ "id": "/db", "cmd": "sleep 1", "instances": 2 })),
                NOW + 1,
            ),
            (web(2), NOW + 2),
        ];
        let mut tx = Tx::new(NOW + 3);
        let err = install_all(&mut s, &mut tx, apps, false).expect_err("locked");
        assert!(matches!(err, AppError::Locked { .. }), "{err:?}");
        assert_eq!(s.apps["/db"].app.instances, 1);
        assert_eq!(s.apps["/web"].app.instances, 1);
        assert!(tx.events.is_empty(), "{:?}", event_types(&tx));
    }
}
