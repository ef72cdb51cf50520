//! The scheduler: after every change (and on a timer) it compares each app's tasks with what the
//! app asks for and acts — declares silent agents lost, launches missing tasks through
//! [`crate::placement`] (after the app's backoff), kills extra and outdated ones within the
//! upgrade strategy, finishes deployments, and fills the launch queue with the reason a task
//! waits. It is level-triggered: it never remembers what it did, only what is.

use std::collections::HashMap;

use cairn_marathon::{
    App, TaskSpec, TaskState, TaskStatusUpdate, iso8601_millis, service_name, task_id_for,
};
use serde_json::json;

use crate::core::{CoreConfig, Tx};
use crate::events::Event;
use crate::model::{AppEntry, DeploymentKind, QueueEntry, State, Task, TaskFailure};
use crate::placement::{Demand, Offer, Placer};

/// Runs one round of scheduling.
pub fn reconcile(state: &mut State, tx: &mut Tx, cfg: &CoreConfig) {
    expire_agents(state, tx, cfg);
    kill_orphans(state, tx);
    kill_unhealthy(state, tx);
    let mut offers = build_offers(state);
    state.queue.clear();
    let ids: Vec<String> = state.apps.keys().cloned().collect();
    for id in &ids {
        reconcile_app(state, tx, id, &mut offers);
    }
    finish_deployments(state, tx);
}

/// Agents silent past the timeout are lost, and so are their tasks.
fn expire_agents(state: &mut State, tx: &mut Tx, cfg: &CoreConfig) {
    let timeout = cfg.agent_timeout.as_millis() as u64;
    let lost: Vec<String> = state
        .agents
        .values()
        .filter(|a| !a.lost && tx.now_ms.saturating_sub(a.last_seen_ms) > timeout)
        .map(|a| a.node.clone())
        .collect();
    for node in lost {
        tracing::warn!(%node, "agent silent past the agent timeout: lost; replacing its tasks");
        if let Some(a) = state.agents.get_mut(&node) {
            a.lost = true;
        }
        tx.agent(&node);
        let tasks: Vec<String> = state
            .tasks
            .values()
            .filter(|t| t.node == node && t.is_active())
            .map(|t| t.id.clone())
            .collect();
        for id in tasks {
            finish_task(
                state,
                tx,
                &id,
                TaskState::Lost,
                "agent lost: silent past --agent-timeout",
            );
            // Its agent cannot take it out of the catalog: DNS and load balancers must stop
            // sending traffic there now, not when the node's TTL check runs out.
            tx.stale_services.push((node.clone(), id));
        }
    }
}

/// Tasks whose app is gone are killed.
fn kill_orphans(state: &mut State, tx: &mut Tx) {
    let orphans: Vec<String> = state
        .tasks
        .values()
        .filter(|t| t.is_desired() && t.framework.is_none() && !state.apps.contains_key(&t.app_id))
        .map(|t| t.id.clone())
        .collect();
    for id in orphans {
        kill_task(state, tx, &id);
    }
}

/// When a task failing its health checks is killed: failures inside the grace period after its
/// start do not count; after it, `maxConsecutiveFailures` intervals of failing (0 = never).
/// The catalog reports status changes, not each run, so "consecutive failures" is measured as
/// time spent failing. `None` when the task is healthy or its health is unknown.
pub fn unhealthy_kill_at(t: &Task) -> Option<u64> {
    let since = t.unhealthy_since.filter(|_| t.healthy == Some(false))?;
    let started = t.started_at?;
    t.spec
        .health_checks
        .iter()
        .filter(|hc| hc.max_consecutive_failures > 0)
        .map(|hc| {
            let counted_from = since.max(started + hc.grace_period_seconds * 1000);
            counted_from + hc.max_consecutive_failures * hc.interval_seconds * 1000
        })
        .min()
}

/// Kills tasks that failed their health checks for too long; the app's scheduling replaces them.
fn kill_unhealthy(state: &mut State, tx: &mut Tx) {
    let doomed: Vec<(String, String, String, String, String)> = state
        .tasks
        .values()
        .filter(|t| t.is_desired() && t.state == TaskState::Running)
        .filter(|t| unhealthy_kill_at(t).is_some_and(|at| at <= tx.now_ms))
        .map(|t| {
            (
                t.id.clone(),
                t.app_id.clone(),
                t.version.clone(),
                t.host.clone(),
                t.node.clone(),
            )
        })
        .collect();
    for (id, app_id, version, host, node) in doomed {
        tracing::warn!(task = %id, app = %app_id, "task failed its health checks past maxConsecutiveFailures; killing it");
        tx.event(Event::new(
            "unhealthy_instance_kill_event",
            tx.now_ms,
            json!({
                "appId": app_id, "taskId": id, "instanceId": id, "version": version,
                "reason": "health checks failed past maxConsecutiveFailures",
                "host": host, "slaveId": node,
            }),
        ));
        kill_task(state, tx, &id);
    }
}

/// Every active agent's unused resources.
pub fn build_offers(state: &State) -> Vec<Offer> {
    let mut offers: Vec<Offer> = Vec::with_capacity(state.agents.len());
    let mut index: HashMap<&str, usize> = HashMap::new();
    for a in state.agents.values().filter(|a| !a.lost && !a.draining) {
        index.insert(a.node.as_str(), offers.len());
        offers.push(Offer {
            node: a.node.clone(),
            attributes: a.attributes.clone(),
            total_cpus: a.resources.cpus,
            total_mem: a.resources.mem,
            free_cpus: a.resources.cpus,
            free_mem: a.resources.mem,
            free_disk: a.resources.disk,
            port_ranges: a.resources.ports.clone(),
            used_ports: Default::default(),
            app_counts: HashMap::new(),
        });
    }
    for t in state.tasks.values().filter(|t| t.is_active()) {
        let Some(&i) = index.get(t.node.as_str()) else {
            continue;
        };
        let o = &mut offers[i];
        o.free_cpus -= t.spec.cpus;
        o.free_mem -= t.spec.mem;
        o.free_disk -= t.spec.disk;
        o.used_ports.extend(t.ports.iter().copied());
        if t.is_desired() {
            *o.app_counts.entry(t.app_id.clone()).or_insert(0) += 1;
        }
    }
    offers
}

/// Running, and passing its health checks if it has any.
pub fn is_healthy(t: &Task) -> bool {
    t.state == TaskState::Running && (t.spec.health_checks.is_empty() || t.healthy == Some(true))
}

fn reconcile_app(state: &mut State, tx: &mut Tx, app_id: &str, offers: &mut [Offer]) {
    let Some(entry) = state.apps.get(app_id) else {
        return;
    };
    let app = entry.app.clone();
    let config_version = entry.config_version().to_string();
    let n = usize::try_from(app.instances).unwrap_or(0);
    let mut current: Vec<&Task> = Vec::new();
    let mut old: Vec<&Task> = Vec::new();
    let draining = |node: &str| state.agents.get(node).is_some_and(|a| a.draining);
    for t in state.app_tasks(app_id).filter(|t| t.is_desired()) {
        // A task on a draining agent is replaced like one of an old version: within the
        // upgrade strategy, new ones first.
        if t.config_version == config_version && !draining(&t.node) {
            current.push(t);
        } else {
            old.push(t);
        }
    }

    // Scale down: the kill selection picks which go; tasks not yet running go first.
    let mut kills: Vec<String> = Vec::new();
    if current.len() > n {
        let mut order = current.clone();
        order.sort_by_key(|t| {
            let age_key = if app.kill_selection == "OLDEST_FIRST" {
                t.staged_at as i128
            } else {
                -(t.staged_at as i128)
            };
            (t.state == TaskState::Running, age_key)
        });
        kills.extend(order.iter().take(current.len() - n).map(|t| t.id.clone()));
        current.retain(|t| !kills.contains(&t.id));
    }

    // Old version: unhealthy ones go first, but only once the new version has proven healthy
    // (a blip in an old task's checks must not shrink the app while a new version that may
    // never become healthy is on its way); healthy ones while enough healthy remain.
    let min_healthy = (n as f64 * app.upgrade_strategy.minimum_health_capacity).ceil() as usize;
    let healthy_new = current.iter().filter(|t| is_healthy(t)).count();
    let mut healthy_old = old.iter().filter(|t| is_healthy(t)).count();
    let mut old_left = old.len();
    let mut old_sorted = old.clone();
    old_sorted.sort_by_key(|t| (is_healthy(t), std::cmp::Reverse(t.staged_at)));
    for t in &old_sorted {
        if !is_healthy(t) {
            if healthy_new > 0 || min_healthy == 0 {
                kills.push(t.id.clone());
                old_left -= 1;
            }
        } else if healthy_new + healthy_old > min_healthy || healthy_new >= n {
            kills.push(t.id.clone());
            healthy_old -= 1;
            old_left -= 1;
        }
    }

    // Launch what is missing, within maximumOverCapacity and after the backoff.
    let missing = n.saturating_sub(current.len());
    let max_active = n + (n as f64 * app.upgrade_strategy.maximum_over_capacity).floor() as usize;
    let mut room = max_active.saturating_sub(current.len() + old_left);
    if max_active == n && room == 0 && missing > 0 && old_left > 0 && healthy_new == current.len() {
        // No room above the target at all (maximumOverCapacity rounds to 0): replace one task at
        // a time — kill one old task once every new one so far is healthy.
        if let Some(t) = old_sorted.iter().find(|t| !kills.contains(&t.id)) {
            kills.push(t.id.clone());
            room = 1;
        }
    }
    let to_launch = missing.min(room);
    for id in kills {
        kill_task(state, tx, &id);
    }
    if to_launch == 0 {
        return;
    }
    let (delay_until, failures) = {
        let e = &state.apps[app_id];
        (e.delay_until_ms, e.failures)
    };
    let since = state
        .deployment_of(app_id)
        .map_or(tx.now_ms, |d| d.started_ms);
    if tx.now_ms < delay_until {
        state.queue.insert(
            app_id.to_string(),
            QueueEntry {
                count: to_launch as u32,
                delay_until_ms: delay_until,
                since_ms: since,
                reason: Some(format!(
                    "launch delayed by backoff after {failures} failed task(s)"
                )),
                agents_considered: offers.len(),
            },
        );
        return;
    }
    let host_ports = app.host_port_demand();
    let required: Vec<u16> = if host_ports.iter().any(|p| *p != 0) {
        host_ports
    } else {
        Vec::new()
    };
    let demand = Demand {
        app_id,
        cpus: app.cpus,
        mem: app.mem,
        disk: app.disk,
        ports: app.port_count(),
        required_ports: required,
        constraints: &app.constraints,
    };
    let mut placer = match Placer::new(offers, demand) {
        Ok(p) => p,
        Err(reason) => {
            queue_reason(state, app_id, to_launch, since, reason, offers.len());
            return;
        }
    };
    let mut launched = 0;
    for _ in 0..to_launch {
        match placer.place_one(offers) {
            Ok(p) => {
                let node = offers[p.offer].node.clone();
                launch(state, tx, &app, &config_version, &node, p.ports, None);
                launched += 1;
            }
            Err(reason) => {
                queue_reason(
                    state,
                    app_id,
                    to_launch - launched,
                    since,
                    reason,
                    offers.len(),
                );
                break;
            }
        }
    }
}

fn queue_reason(
    state: &mut State,
    app_id: &str,
    count: usize,
    since: u64,
    reason: String,
    n: usize,
) {
    state.queue.insert(
        app_id.to_string(),
        QueueEntry {
            count: count as u32,
            delay_until_ms: 0,
            since_ms: since,
            reason: Some(reason),
            agents_considered: n,
        },
    );
}

/// Creates a task of `app` on `node` (for `framework`, when launched through an offer) and puts
/// it in the node's desired set; returns its id.
pub fn launch(
    state: &mut State,
    tx: &mut Tx,
    app: &App,
    config_version: &str,
    node: &str,
    ports: Vec<u16>,
    framework: Option<&str>,
) -> String {
    let id = task_id_for(&app.id, &uuid::Uuid::new_v4().to_string());
    let host = state
        .agents
        .get(node)
        .map(|a| a.address.clone())
        .unwrap_or_default();
    let version = app.version.clone().unwrap_or_default();
    let service_ports: Vec<u16> = app
        .service_ports()
        .into_iter()
        .map(|p| u16::try_from(p).unwrap_or(0))
        .collect();
    let spec = TaskSpec {
        id: id.clone(),
        app_id: app.id.clone(),
        version: version.clone(),
        cmd: app.cmd.clone(),
        args: app.args.clone(),
        env: app.env.clone(),
        labels: app.labels.clone(),
        cpus: app.cpus,
        mem: app.mem,
        disk: app.disk,
        ports: ports.clone(),
        port_names: app.host_port_names(),
        health_checks: app.health_checks.clone(),
        kill_grace_seconds: app.kill_grace_seconds(),
        container: app.container.clone(),
        networks: app.networks.clone(),
        service_ports: service_ports.clone(),
        service_name: service_name(&app.id, &app.labels),
    };
    let task = Task {
        id: id.clone(),
        app_id: app.id.clone(),
        version,
        config_version: config_version.to_string(),
        node: node.to_string(),
        host,
        ports,
        service_ports,
        state: TaskState::Staging,
        staged_at: tx.now_ms,
        started_at: None,
        message: String::new(),
        healthy: None,
        unhealthy_since: None,
        health: Default::default(),
        kill_requested: false,
        spec,
        framework: framework.map(str::to_string),
    };
    tx.event(Event::status_update(
        &task,
        TaskState::Staging,
        "",
        tx.now_ms,
    ));
    tx.task(&id, node);
    state.tasks.insert(id.clone(), task);
    id
}

/// Takes a task out of its agent's desired set; the agent kills it and reports TASK_KILLED. A
/// task the agent never acknowledged is killed on the spot: it may never have started.
pub fn kill_task(state: &mut State, tx: &mut Tx, id: &str) {
    let Some(t) = state.tasks.get_mut(id) else {
        return;
    };
    if !t.is_desired() {
        return;
    }
    t.kill_requested = true;
    let node = t.node.clone();
    let staging = t.state == TaskState::Staging;
    tx.task(id, &node);
    if staging {
        finish_task(state, tx, id, TaskState::Killed, "killed before it started");
    }
}

/// A task reached a terminal state: it is removed, and a failure feeds the app's backoff.
pub fn finish_task(state: &mut State, tx: &mut Tx, id: &str, end: TaskState, message: &str) {
    let Some(t) = state.tasks.remove(id) else {
        return;
    };
    tx.task(id, &t.node);
    tx.event(Event::status_update(&t, end, message, tx.now_ms));
    let mut ended = t.clone();
    ended.state = end;
    ended.message = message.to_string();
    if state.finished.len() == crate::model::FINISHED_KEPT {
        state.finished.pop_front();
    }
    state.finished.push_back(ended);
    if t.kill_requested || (!end.counts_as_failure() && end != TaskState::Lost) {
        return;
    }
    let Some(entry) = state.apps.get_mut(&t.app_id) else {
        return;
    };
    entry.last_failure = Some(TaskFailure {
        app_id: t.app_id.clone(),
        host: t.host.clone(),
        message: message.to_string(),
        state: end.as_str().to_string(),
        task_id: t.id.clone(),
        timestamp: iso8601_millis(tx.now_ms),
        version: t.version.clone(),
        slave_id: t.node.clone(),
    });
    if end.counts_as_failure() && t.config_version == entry.config_version() {
        entry.failures = entry.failures.saturating_add(1);
        let delay = entry.app.launch_delay_seconds(entry.failures);
        entry.delay_until_ms = tx.now_ms + (delay * 1000.0) as u64;
        tracing::info!(app = %t.app_id, task = %t.id, state = %end, failures = entry.failures, delay_s = delay, "task failed; relaunch delayed");
    }
    tx.app(&t.app_id);
}

/// Applies one status update from `node`. Updates for unknown tasks, or from an agent the task
/// is not on, are ignored: the desired set already tells that agent what to do.
pub fn apply_status(state: &mut State, tx: &mut Tx, node: &str, u: &TaskStatusUpdate) {
    let Some(t) = state.tasks.get_mut(&u.task_id) else {
        return;
    };
    if t.node != node {
        return;
    }
    if u.state.is_terminal() {
        finish_task(state, tx, &u.task_id, u.state, &u.message);
        return;
    }
    if t.state == u.state {
        return;
    }
    t.state = u.state;
    t.message = u.message.clone();
    if u.state == TaskState::Running && t.started_at.is_none() {
        t.started_at = Some(if u.timestamp > 0 {
            u.timestamp
        } else {
            tx.now_ms
        });
    }
    let event = Event::status_update(t, u.state, &u.message, tx.now_ms);
    tx.task(&u.task_id, node);
    tx.event(event);
}

/// A deployment is done when its app has exactly its instances, all of the current config and
/// healthy, and nothing is still being killed; a stop is done when no task is left.
fn finish_deployments(state: &mut State, tx: &mut Tx) {
    let mut done = Vec::new();
    for d in state.deployments.values() {
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

/// Builds a new app entry or the next version of one (`restart` forces a new config version).
///
/// `running_config`: the config version of tasks that already run exactly what `app` asks for
/// (see [`runs_as`]); a changed config that matches them (a rollback) keeps them instead of
/// replacing healthy tasks with identical ones.
pub fn next_version(
    prev: Option<&AppEntry>,
    mut app: App,
    version_ms: u64,
    restart: bool,
    running_config: Option<String>,
) -> AppEntry {
    let version = iso8601_millis(version_ms);
    let config_changed = match prev {
        None => true,
        Some(p) => restart || p.app.config_json() != app.config_json(),
    };
    let last_config = if config_changed {
        running_config
            .filter(|_| !restart)
            .unwrap_or_else(|| version.clone())
    } else {
        prev.map(|p| p.config_version().to_string())
            .unwrap_or_else(|| version.clone())
    };
    app.version = Some(version.clone());
    app.version_info = Some(cairn_marathon::VersionInfo {
        last_scaling_at: version.clone(),
        last_config_change_at: last_config,
    });
    let mut versions = prev.map(|p| p.versions.clone()).unwrap_or_default();
    versions.push(version);
    let (failures, delay_until_ms, last_failure) = match prev {
        Some(p) if !config_changed => (p.failures, p.delay_until_ms, p.last_failure.clone()),
        Some(p) => (0, 0, p.last_failure.clone()),
        None => (0, 0, None),
    };
    AppEntry {
        app,
        versions,
        failures,
        delay_until_ms,
        last_failure,
    }
}

/// Whether a task runs what `app` defines (same command, resources, environment, labels, checks,
/// container and number of ports).
pub fn runs_as(t: &Task, app: &App) -> bool {
    let s = &t.spec;
    s.cmd == app.cmd
        && s.args == app.args
        && s.env == app.env
        && s.labels == app.labels
        && s.cpus == app.cpus
        && s.mem == app.mem
        && s.disk == app.disk
        && s.health_checks == app.health_checks
        && s.container == app.container
        && on_network(&s.networks) == on_network(&app.networks)
        && s.kill_grace_seconds == app.kill_grace_seconds()
        && s.ports.len() == app.port_count()
}

/// The networks a task joins: specs and apps from before `networks` existed mean the host's.
fn on_network(n: &Option<Vec<cairn_marathon::Network>>) -> Vec<cairn_marathon::Network> {
    n.clone()
        .unwrap_or_else(|| vec![cairn_marathon::Network::host()])
}
